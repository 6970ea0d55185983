"""A body rewriter for formats that need the whole body: buffer up to a cap, then transform.

Until ``flush`` nothing is sent, so the output cannot depend on how the input was chunked. When
the body grows past ``limit`` bytes, the rewriter gives up: it sends what it holds unchanged and
passes the rest through, with one warning, so memory per response stays bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rproxy.rewriters.base import BodyRewriter, RewriteContext

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class BufferedBodyRewriter:
    def __init__(self, name: str, limit: int, transform: Callable[[bytes], bytes]) -> None:
        self._name = name
        self._limit = limit
        self._transform = transform
        self._held: list[bytes] | None = []
        self._size = 0

    def feed(self, chunk: bytes) -> bytes:
        if self._held is None:
            return chunk
        self._held.append(chunk)
        self._size += len(chunk)
        if self._size <= self._limit:
            return b""
        logger.warning(
            "%s rewriter: body over %d bytes, passed through unchanged", self._name, self._limit
        )
        held, self._held = b"".join(self._held), None
        return held

    def flush(self) -> bytes:
        if self._held is None:
            return b""
        body, self._held = b"".join(self._held), None
        return self._transform(body)


def buffered(name: str, ctx: RewriteContext, transform: Callable[[bytes], bytes]) -> BodyRewriter:
    """A BufferedBodyRewriter capped at ``ctx.options["max_bytes"]`` (``--rewrite-max-bytes``)."""
    limit = int(ctx.options.get("max_bytes", DEFAULT_MAX_BYTES))
    return BufferedBodyRewriter(name, limit, transform)
