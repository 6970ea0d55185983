"""An example rproxy rewriter: upper-cases plain-text bodies and marks the response.

It shows the whole plugin API: ``matches`` picks responses by their metadata, ``rewrite_headers``
edits headers in place, ``open_body`` returns a per-response body rewriter whose ``feed`` /
``flush`` give the same output however the body is chunked (ASCII upper-casing touches one byte
at a time, so no byte needs to be held back).
"""

from __future__ import annotations

from typing import ClassVar

from multidict import CIMultiDict

from rproxy.rewriters.base import BodyRewriter, ResponseMeta, RewriteContext


class _Upper:
    def feed(self, chunk: bytes) -> bytes:
        return chunk.upper()

    def flush(self) -> bytes:
        return b""


class ShoutRewriter:
    name: ClassVar[str] = "shout"

    def matches(self, meta: ResponseMeta) -> bool:
        return meta.mime_type == "text/plain"

    def rewrite_headers(self, headers: CIMultiDict[str], ctx: RewriteContext) -> None:
        headers["X-Example-Rewriter"] = self.name

    def open_body(self, ctx: RewriteContext) -> BodyRewriter | None:
        return _Upper()
