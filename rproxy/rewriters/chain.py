"""Run the enabled rewriters on one response, in order, each failure isolated.

An app can opt a response out with the header ``X-Rproxy-Rewrite: off`` (the header itself never
reaches the client). A rewriter that raises is logged with its name and counted; the response then
passes with the headers it came with, and the other requests are unaffected.
"""

from __future__ import annotations

import logging
from collections import Counter

from multidict import CIMultiDict

from rproxy.rewriters.base import ResponseMeta, RewriteContext, Rewriter
from rproxy.urls import UrlMapper

logger = logging.getLogger(__name__)

OPT_OUT = "X-Rproxy-Rewrite"


def response_meta(status: int, headers: CIMultiDict[str], path: str) -> ResponseMeta:
    """The ResponseMeta of a response with ``headers``."""
    content_type = headers.get("Content-Type", "")
    mime, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip("\"'").lower()
    encoding = headers.get("Content-Encoding", "").strip().lower()
    return ResponseMeta(status, mime.strip().lower(), charset, encoding, path)


def rewrite_headers(
    rewriters: list[Rewriter],
    headers: CIMultiDict[str],
    *,
    status: int,
    path: str,
    urls: UrlMapper,
    public_host: str | None,
    failures: Counter[str],
) -> CIMultiDict[str]:
    """``headers`` as the enabled rewriters leave them (unchanged if one of them fails)."""
    opt_out = headers.popall(OPT_OUT, [])
    if not rewriters or any(value.strip().lower() == "off" for value in opt_out):
        return headers
    ctx = RewriteContext(urls, response_meta(status, headers, path), public_host)
    rewritten = headers.copy()
    for rewriter in rewriters:
        if not rewriter.matches(ctx.meta):
            continue
        try:
            rewriter.rewrite_headers(rewritten, ctx)
        except Exception:
            failures[rewriter.name] += 1
            logger.exception(
                "rewriter %r failed on the headers of %s; left unchanged", rewriter.name, path
            )
            return headers
    return rewritten
