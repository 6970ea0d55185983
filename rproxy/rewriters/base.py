"""The rewriter plugin API: what a rewriter is given and what it must provide.

A ``Rewriter`` is a small, stateless object registered under the entry-point group
``rproxy.rewriters``; rproxy makes one instance per application. For each response whose
``ResponseMeta`` it ``matches``, it may change the headers and, by returning a ``BodyRewriter``
from ``open_body``, the body. A body rewriter is per response and stateful: ``feed`` gets the body
chunk by chunk (it may hold bytes back and return ``b""``) and ``flush`` is called exactly once at
the end; its output must not depend on how the input was chunked. All URL decisions go through
``ctx.urls`` (the UrlMapper), never through string pasting: values are escaped by a serialiser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from multidict import CIMultiDict

from rproxy.urls import UrlMapper


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What a rewriter may know about a response before it decides to touch it."""

    status: int
    mime_type: str  # lower case, without parameters; "" when the response has no Content-Type
    charset: str | None
    encoding: str  # Content-Encoding, lower case; "" for identity
    path: str  # the path asked of the upstream


@dataclass(frozen=True, slots=True)
class RewriteContext:
    """Everything a rewriter works with for one response; nothing global."""

    urls: UrlMapper
    meta: ResponseMeta
    public_host: str | None = None  # the Host the client used
    options: Mapping[str, Any] = field(default_factory=dict)

    def public_url(self, url: str) -> str:
        """``url`` as the client must see it (the URL policy of ``UrlMapper.to_public``)."""
        return self.urls.to_public(url, self.public_host)

    def public_mapper(self) -> Callable[[str], str]:
        """``public_url`` as one callable, quicker for the many URLs of a page."""
        return self.urls.public_mapper(self.public_host)


class BodyRewriter(Protocol):
    def feed(self, chunk: bytes) -> bytes:
        """Rewrite the next chunk; may hold bytes back and return ``b""``."""

    def flush(self) -> bytes:
        """Return whatever is held back; called exactly once, at the end."""


class Rewriter(Protocol):
    name: ClassVar[str]  # equals its entry-point name

    def matches(self, meta: ResponseMeta) -> bool:
        """Whether this rewriter wants to see the response."""

    def rewrite_headers(self, headers: CIMultiDict[str], ctx: RewriteContext) -> None:
        """Change the response headers in place."""

    def open_body(self, ctx: RewriteContext) -> BodyRewriter | None:
        """A body rewriter for this response, or None to leave the body alone."""
