"""HTTP/1.1 on the wire to the upstream: the request head rproxy writes, the response head it reads.

``request_head`` serialises a request line and headers that are already vetted (the client's
arrived through aiohttp's parser, rproxy's own are built from checked parts) and still refuses
any CR, LF or NUL inside them, so nothing copied into a header can start another one.
``parse_response_head`` reads one complete response head with llhttp (httptools): it must end
with an empty line, and llhttp accepts CRLF line ends only, so the head llhttp sees and the head
rproxy cut out are the same bytes (``header_fields`` splits its fields). ``body_framing`` decides
how the body that follows is delimited (RFC 9112 6.3): none, a Content-Length, chunked, or up to
the close of the connection; an ambiguous head (Content-Length with Transfer-Encoding, several
lengths) is refused.
This module does no I/O and keeps no state.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import httptools
from multidict import CIMultiDict

from rproxy.errors import BadUpstreamResponse

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024  # an upstream's response head
FIELD_LIMIT = 8190  # bytes in a client's request line and in each header (aiohttp's, nginx's 8 KiB)


class Framing(enum.Enum):
    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: str
    headers: CIMultiDict[str]
    keep_alive: bool


class _HeadCollector:
    """llhttp's callbacks for a response head; no ``on_header``: ``header_fields`` splits them."""

    __slots__ = ("complete", "extra", "reason")

    def __init__(self) -> None:
        self.reason = b""
        self.complete = False
        self.extra = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_headers_complete(self) -> None:
        self.complete = True

    def on_body(self, body: bytes) -> None:
        self.extra = True


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request line and header block to send; ValueError if a part holds CR, LF or NUL."""
    return _head(f"{method} {target} HTTP/1.1", headers)


def response_head(
    version: str, status: int, reason: str, headers: Iterable[tuple[str, str]]
) -> bytes:
    """The status line and header block to send; ValueError if a part holds CR, LF or NUL."""
    return _head(f"HTTP/{version} {status} {reason}", headers)


def _head(first: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [first, *map(": ".join, headers), "", ""]
    text = "\r\n".join(lines)
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks or "\0" in text:
        raise ValueError("a start line or header contains CR, LF or NUL")
    return text.encode("utf-8", "surrogateescape")


def parse_response_head(head: bytes, *, upgrade: bool = False) -> ResponseHead:
    """Parse ``head``: the status line through the empty line, ``HEAD_END`` included.

    A switch of protocols (101 with Upgrade) is accepted only when ``upgrade`` asked for one."""
    collector = _HeadCollector()
    parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        if not upgrade:
            raise BadUpstreamResponse("the upstream switched protocols unasked") from None
    except httptools.HttpParserError as exc:
        raise BadUpstreamResponse(f"the response head is not valid HTTP/1.1: {exc}") from None
    if not collector.complete or collector.extra:
        raise BadUpstreamResponse("the response head does not end where its empty line is")
    return ResponseHead(
        status=parser.get_status_code(),
        reason=collector.reason.decode("latin-1"),
        headers=header_fields(head),
        keep_alive=parser.should_keep_alive(),
    )


def header_fields(head: bytes) -> CIMultiDict[str]:
    """The fields of a ``head`` that llhttp accepted, in order, names as sent.

    llhttp accepts CRLF line ends only, no folded line and no space before a colon, so every line
    between the start line and the empty one is one ``name:value``. A value loses the spaces and
    tabs around it, which are not part of it (RFC 9110 5.5; llhttp's ``on_header`` keeps trailing
    ones, aiohttp's parser drops them). Splitting here costs less than llhttp's callback per
    field; bytes that are not UTF-8 stay as surrogate escapes, as ``request_head`` writes them."""
    fields: CIMultiDict[str] = CIMultiDict()
    for line in head.decode("utf-8", "surrogateescape").split("\r\n")[1:-2]:
        name, _, value = line.partition(":")
        fields.add(name, value.strip(" \t"))
    return fields


def body_framing(
    status: int, *, head_request: bool, headers: CIMultiDict[str]
) -> tuple[Framing, int]:
    """How the body after this response head is delimited, and its length for ``LENGTH``."""
    if head_request or status < 200 or status in (204, 304):
        return Framing.NONE, 0
    codings = headers.getall("Transfer-Encoding", ())
    lengths = headers.getall("Content-Length", ())
    if codings:
        if lengths:
            raise BadUpstreamResponse("the response has both Transfer-Encoding and Content-Length")
        last = codings[-1].rsplit(",", 1)[-1].strip().lower()
        return (Framing.CHUNKED, 0) if last == "chunked" else (Framing.CLOSE, 0)
    if not lengths:
        return Framing.CLOSE, 0
    if len(lengths) > 1 or not lengths[0].isdigit() or not lengths[0].isascii():
        raise BadUpstreamResponse("the response's Content-Length is not one decimal number")
    return Framing.LENGTH, int(lengths[0])


def chunked_parser(callbacks: object) -> httptools.HttpResponseParser:
    """A parser for a chunked body: fed a minimal head first, then the body bytes as they come.

    ``callbacks`` gets ``on_body`` for each piece of chunk data and ``on_message_complete`` once
    the last chunk (and any trailer) is in.
    """
    parser = httptools.HttpResponseParser(callbacks)
    parser.feed_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    return parser
