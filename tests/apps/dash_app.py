"""A small Dash app for the browser tests: typing in an input updates a div through a callback.

``python dash_app.py --port N [--requests-prefix P] [--routes-prefix P] [--url-base P]``: listens
on 127.0.0.1:N; the options are Dash's own prefix settings (``requests_pathname_prefix``,
``routes_pathname_prefix``, ``url_base_pathname``), each a path ending in ``/``; none by default.
"""

from __future__ import annotations

import argparse
from typing import Any

from dash import Dash, Input, Output, dcc, html


def make_app(**prefixes: Any) -> Dash:
    app = Dash(__name__, title="rproxy dash test", **prefixes)
    app.layout = html.Div(
        [
            html.H1("rproxy dash test"),
            dcc.Input(id="name", type="text", value=""),
            html.Div(id="greeting"),
        ]
    )

    @app.callback(Output("greeting", "children"), Input("name", "value"))
    def greet(name: str | None) -> str:
        return f"Hello, {name or 'nobody'}! (from dash)"

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests-prefix", dest="requests_pathname_prefix")
    parser.add_argument("--routes-prefix", dest="routes_pathname_prefix")
    parser.add_argument("--url-base", dest="url_base_pathname")
    args = vars(parser.parse_args())
    port = args.pop("port")
    prefixes = {key: value for key, value in args.items() if value is not None}
    make_app(**prefixes).run(host="127.0.0.1", port=port, debug=False)


if __name__ == "__main__":
    main()
