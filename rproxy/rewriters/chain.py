"""Run the enabled rewriters on one response, in order, each failure isolated.

An app can opt a response out with the header ``X-Rproxy-Rewrite: off`` (the header itself never
reaches the client). A rewriter that raises on the headers is logged with its name and counted;
the response then passes as it came, and the other requests are unaffected. A body rewriter that
raises later is the pipeline's business (streams.py): the connection is dropped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict

from rproxy.rewriters.base import BodyRewriter, ResponseMeta, RewriteContext, Rewriter
from rproxy.streams import DECODABLE, BodyPipeline
from rproxy.urls import UrlMapper

logger = logging.getLogger(__name__)

OPT_OUT = "X-Rproxy-Rewrite"
# Headers that describe the body as the upstream sent it, and would lie about a rewritten one.
_STALE_WHEN_CHANGED = ("Content-Length", "Content-MD5", "Digest", "Content-Digest", "Repr-Digest")


def response_meta(status: int, headers: CIMultiDict[str], path: str) -> ResponseMeta:
    """The ResponseMeta of a response with ``headers``."""
    mime, _, params = headers.get("Content-Type", "").partition(";")
    charset = None
    if params:
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"'").lower()
    encoding = headers.get("Content-Encoding", "")
    return ResponseMeta(status, mime.strip().lower(), charset, encoding.strip().lower(), path)


@dataclass(slots=True)
class Rewritten:
    """A response's headers after rewriting, and the pipeline its body must go through, if any."""

    headers: CIMultiDict[str]
    body: BodyPipeline | None = None


def rewrite_response(
    rewriters: list[Rewriter],
    headers: CIMultiDict[str],
    *,
    status: int,
    method: str,
    path: str,
    urls: UrlMapper,
    public_host: str | None,
    failures: Counter[str],
    options: Mapping[str, Any] | None = None,
) -> Rewritten:
    """Run the enabled rewriters on a response's headers and open their body rewriters.

    Headers come back unchanged if a rewriter fails on them. Bodies are rewritten only when they
    can be: not for HEAD, 1xx, 204 or 304, never for event streams, and only in an encoding
    rproxy can decode (identity, gzip, deflate, br).
    """
    opted_out = OPT_OUT in headers and any(
        value.strip().lower() == "off" for value in headers.popall(OPT_OUT)
    )
    if opted_out or not rewriters:
        return Rewritten(headers)
    meta = response_meta(status, headers, path)
    matching = [rewriter for rewriter in rewriters if rewriter.matches(meta)]
    if not matching:
        return Rewritten(headers)
    ctx = RewriteContext(urls, meta, public_host, options or {})
    rewritten = headers.copy()
    for rewriter in matching:
        try:
            rewriter.rewrite_headers(rewritten, ctx)
        except Exception:
            failures[rewriter.name] += 1
            logger.exception(
                "rewriter %r failed on the headers of %s; left unchanged", rewriter.name, path
            )
            return Rewritten(headers)
    if not _body_can_change(method, meta):
        return Rewritten(rewritten)
    stages: list[tuple[str, BodyRewriter]] = []
    for rewriter in matching:
        try:
            body = rewriter.open_body(ctx)
        except Exception:
            failures[rewriter.name] += 1
            logger.exception("rewriter %r failed to open the body of %s", rewriter.name, path)
            return Rewritten(rewritten)
        if body is not None:
            stages.append((rewriter.name, body))
    if not stages:
        return Rewritten(rewritten)
    for name in _STALE_WHEN_CHANGED:
        rewritten.popall(name, None)
    return Rewritten(rewritten, BodyPipeline(stages, meta.encoding, failures))


def _body_can_change(method: str, meta: ResponseMeta) -> bool:
    return (
        method != "HEAD"
        and meta.status >= 200
        and meta.status not in (204, 304)
        and meta.mime_type != "text/event-stream"
        and meta.encoding in DECODABLE
    )
