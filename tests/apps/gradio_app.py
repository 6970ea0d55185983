"""A small Gradio app for the browser tests: a textbox, a button, a greeting.

``python gradio_app.py --port N [--root-path /user/me]``: listens on 127.0.0.1:N; ``--root-path`` is
Gradio's own prefix option, ``launch(root_path=...)``; without it Gradio reads ``GRADIO_ROOT_PATH``.
Nothing reaches the internet: no analytics, no share link.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # after the environment, which it reads at import


def greet(name: str) -> str:
    return f"Hello, {name}! (from gradio)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root-path")  # None: Gradio reads $GRADIO_ROOT_PATH
    args = parser.parse_args()
    demo = gr.Interface(
        fn=greet,
        inputs=gr.Textbox(label="Name", elem_id="name"),
        outputs=gr.Textbox(label="Greeting", elem_id="greeting"),
        title="rproxy gradio test",
        flagging_mode="never",
    )
    demo.launch(
        server_name="127.0.0.1",
        server_port=args.port,
        root_path=args.root_path,
        share=False,
        inbrowser=False,
        show_error=True,
    )


if __name__ == "__main__":
    main()
