"""The ``headers`` rewriter: URLs in Location, Content-Location, Refresh, Link and Set-Cookie Path.

Each URL goes through the URL policy (``RewriteContext.public_url``), so a redirect to ``/login``
from an app under ``/user/alice/`` sends the browser to ``/user/alice/login``, and a cookie the app
scopes to ``/`` is scoped to the prefix. Only the URL part of each header changes; the rest of the
value is kept as the app wrote it. The prefix was validated at start-up and upstream header values
cannot hold CR or LF, so no rewritten value can leave its header. This rewriter never touches
bodies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar

from multidict import CIMultiDict

from rproxy.rewriters.base import BodyRewriter, ResponseMeta, RewriteContext

_REFRESH = re.compile(
    r"(?P<head>\s*[\d.]+\s*[;,]\s*(?:url\s*=\s*)?)(?P<q>['\"]?)(?P<url>.*?)(?P=q)\s*$",
    re.IGNORECASE,
)
_LINK_TARGET = re.compile(r"<([^>]*)>")
_COOKIE_PATH = re.compile(r"(;\s*path\s*=\s*)([^;]*)", re.IGNORECASE)


class HeaderRewriter:
    name: ClassVar[str] = "headers"

    def matches(self, meta: ResponseMeta) -> bool:
        return True

    def rewrite_headers(self, headers: CIMultiDict[str], ctx: RewriteContext) -> None:
        for name, rewrite in _REWRITES:  # most responses have none of these: a lookup each
            if name in headers:
                for value in headers.popall(name):
                    headers.add(name, rewrite(value, ctx))

    def open_body(self, ctx: RewriteContext) -> BodyRewriter | None:
        return None


def _url(value: str, ctx: RewriteContext) -> str:
    return ctx.public_url(value)


def rewrite_refresh(value: str, ctx: RewriteContext) -> str:
    """A Refresh value (``5; url=/next``) with its URL through the URL policy."""
    match = _REFRESH.match(value)
    if match is None:
        return value
    url = ctx.public_url(match["url"])
    return f"{match['head']}{match['q']}{url}{match['q']}"


def _link(value: str, ctx: RewriteContext) -> str:
    return _LINK_TARGET.sub(lambda m: f"<{ctx.public_url(m[1])}>", value)


def _cookie(value: str, ctx: RewriteContext) -> str:
    return _COOKIE_PATH.sub(lambda m: m[1] + _cookie_path(m[2], ctx), value)


_REWRITES: tuple[tuple[str, Callable[[str, RewriteContext], str]], ...] = (
    ("Location", _url),
    ("Content-Location", _url),
    ("Refresh", rewrite_refresh),
    ("Link", _link),
    ("Set-Cookie", _cookie),
)


def _cookie_path(path: str, ctx: RewriteContext) -> str:
    stripped = path.strip()
    if stripped.startswith("/") and not stripped.startswith("//"):
        return ctx.public_url(stripped)
    return path
