"""The small HTML pages rproxy serves itself while the wrapped command is starting or has failed.

Every value placed in a page (the command, its output, the reason) goes through ``html.escape``;
the pages carry a Content-Security-Policy that allows no script but their own fixed reload (by its
hash), so even a mistake here could not run code. They reload themselves, so a browser lands on
the app once it is ready: a script's ``location.reload()``, which keeps an address's ``#...`` part
(a meta refresh does nothing there: the browser takes it for a move within the page), and a meta
refresh for a browser without scripts.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
from collections.abc import Sequence

from aiohttp import web

_STYLE = "body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{white-space:pre-wrap}"
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@functools.cache
def _reload(refresh_seconds: int) -> tuple[str, str]:
    """The page's reload script, and the Content-Security-Policy that lets it alone run."""
    script = f"setTimeout(function(){{location.reload()}},{refresh_seconds * 1000})"
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return script, f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


def _page(title: str, body: str, refresh_seconds: int) -> web.Response:
    reload, policy = _reload(refresh_seconds)
    text = (
        "<!doctype html>\n<html><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{refresh_seconds}">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{reload}</script>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
    return web.Response(
        status=503,
        text=text,
        content_type="text/html",
        headers={
            **_HEADERS,
            "Content-Security-Policy": policy,
            "Retry-After": str(refresh_seconds),
        },
    )


def starting() -> web.Response:
    """503 while the command starts or restarts."""
    return _page(
        "Starting…",
        "<p>The application is starting. This page reloads by itself.</p>",
        refresh_seconds=2,
    )


def failed(problem: str, command: str, output: Sequence[str]) -> web.Response:
    """503 with what went wrong, the command and its last lines of output, all escaped."""
    tail = html.escape("\n".join(output)) or "(no output)"
    return _page(
        "The application did not start",
        f"<p>{html.escape(problem)}</p>"
        f"<h2>Command</h2><pre>{html.escape(command)}</pre>"
        f"<h2>Last output</h2><pre>{tail}</pre>",
        refresh_seconds=5,
    )
