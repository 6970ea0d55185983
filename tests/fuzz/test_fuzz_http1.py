"""Fuzzing the HTTP/1.1 parsing that faces the upstream: rproxy/http1.py and the response reader.

What is proven:

- ``parse_response_head`` + ``body_framing``, for generated heads (valid ones, and ones mutated
  with duplicate or conflicting Content-Length, Transfer-Encoding variants, bare LF, obs-fold,
  NUL, huge lines, random byte edits), either succeed or raise BadUpstreamResponse, never
  anything else; a success is unambiguous (one decimal Content-Length and no Transfer-Encoding
  for LENGTH, a final ``chunked`` and no Content-Length for CHUNKED); a valid head comes back with
  exactly its status and headers;
- ``chunked_parser`` decodes every valid chunked body (extensions, trailers, any hex case and
  leading zeros) to the reference decoding, whatever the split of its bytes;
- ``UpstreamResponse`` (head cutting, framing, body counting, chunked decoding, all fed the way a
  socket delivers bytes) gives the same status, headers, body and outcome for any split of the
  same bytes, including mutated ones; its failures are BadUpstreamResponse only;
- ``header_fields`` splits every head llhttp accepts (a response head or a request head, with
  spaces and tabs around values, bytes that are not UTF-8, any of the mutations) into exactly the
  fields llhttp's own ``on_header`` callbacks give, less the spaces and tabs llhttp leaves at the
  end of a value;
- ``request_head`` refuses CR, LF or NUL anywhere in a method, target, header name or value, and
  otherwise writes exactly one line per part.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httptools
import pytest
from fuzz_parts import FUZZ
from hypothesis import example, given
from hypothesis import strategies as st
from multidict import CIMultiDict

from rproxy.errors import BadUpstreamResponse
from rproxy.http1 import (
    MAX_HEAD_BYTES,
    Framing,
    body_framing,
    chunked_parser,
    header_fields,
    parse_response_head,
    request_head,
)
from rproxy.upstream_connection import Connection, UpstreamResponse

_TOKEN = st.text(alphabet="ABCXYZabcxyz0123456789-!#$%&'*+.^_`|~", min_size=1, max_size=12)
_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\té"),
    max_size=20,
).map(lambda v: v.strip(" \t"))
_FRAMING_HEADERS = st.sampled_from(
    [
        [],
        [("Content-Length", "5")],
        [("Content-Length", "0")],
        [("Content-Length", "007")],
        [("Content-Length", "5"), ("Content-Length", "5")],
        [("Content-Length", "5"), ("Content-Length", "6")],
        [("Content-Length", "5, 5")],
        [("Content-Length", "+5")],
        [("Content-Length", "-1")],
        [("Content-Length", "99999999999999999999999")],
        [("Transfer-Encoding", "chunked")],
        [("Transfer-Encoding", "CHUNKED")],
        [("Transfer-Encoding", "gzip, chunked")],
        [("Transfer-Encoding", "chunked, gzip")],
        [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")],
        [("Transfer-Encoding", "identity")],
        [("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
        [("Transfer-Encoding", "xchunked")],
    ]
)


@st.composite
def heads(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[str, str]]]:
    """(head bytes, status, headers) of a well-formed response head."""
    status = draw(st.sampled_from([100, 101, 103, 200, 204, 206, 301, 304, 404, 500, 599]))
    reason = draw(st.sampled_from(["OK", "", "Not Found", "Weird reason é"]))
    headers = draw(st.lists(st.tuples(_TOKEN, _VALUE), max_size=5)) + draw(_FRAMING_HEADERS)
    headers = draw(st.permutations(headers))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    lines = [f"{version} {status} {reason}"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), status, headers


_MUTATIONS = [
    (b"\r\n", b"\n"),
    (b"\r\n", b"\r\n \t"),  # obs-fold
    (b": ", b":\0 "),
    (b": ", b" : "),
    (b"\r\n", b"\r\r\n"),
    (b"HTTP/1.1", b"HTTP/2.0"),
    (b"HTTP/1.1", b"http/1.1"),
    (b" ", b"  "),
    (b":", b""),
    (b"\r\n\r\n", b"\r\n"),
]


@st.composite
def mutated_heads(draw: st.DrawFn) -> bytes:
    head, _, _ = draw(heads())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            old, new = draw(st.sampled_from(_MUTATIONS))
            head = head.replace(old, new, 1)
        elif kind == 1 and head:
            at = draw(st.integers(0, len(head) - 1))
            head = head[:at] + draw(st.binary(max_size=3)) + head[at + 1 :]
        elif kind == 2:
            head = head.replace(b"\r\n", b"\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n", 1)
        else:
            head = head.replace(b"\r\n", b"\r\nContent-Length: 3\r\n", 1)
    return head


def _check_framing(head: bytes, head_request: bool) -> tuple[Any, Framing, int] | None:
    """Parse and frame ``head``: None when refused (BadUpstreamResponse), else the result, which
    must be unambiguous."""
    try:
        parsed = parse_response_head(head)
        framing, length = body_framing(
            parsed.status, head_request=head_request, headers=parsed.headers
        )
    except BadUpstreamResponse:
        return None
    lengths = parsed.headers.getall("Content-Length", [])
    codings = parsed.headers.getall("Transfer-Encoding", [])
    if framing is Framing.LENGTH:
        assert len(lengths) == 1
        assert not codings
        assert lengths[0].isascii()
        assert lengths[0].isdigit()
        assert int(lengths[0]) == length
    elif framing is Framing.CHUNKED:
        assert not lengths
        assert codings[-1].rsplit(",", 1)[-1].strip().lower() == "chunked"
    elif framing is Framing.CLOSE:
        assert not lengths
        assert not codings or codings[-1].rsplit(",", 1)[-1].strip().lower() != "chunked"
    else:
        assert head_request or parsed.status < 200 or parsed.status in (204, 304)
    return parsed, framing, length


@FUZZ
@given(case=heads(), head_request=st.booleans())
def test_a_valid_head_parses_to_its_own_status_and_headers(
    case: tuple[bytes, int, list[tuple[str, str]]], head_request: bool
) -> None:
    head, status, headers = case
    result = _check_framing(head, head_request)
    if result is None:
        return  # refused: only for ambiguous or malformed framing headers
    parsed, _, _ = result
    assert parsed.status == status
    assert list(parsed.headers.items()) == headers


@FUZZ
@given(head=mutated_heads(), head_request=st.booleans())
@example(head=b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\n", head_request=False)
@example(head=b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", head_request=False)
@example(
    head=b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", head_request=False
)
def test_a_mutated_head_is_refused_or_framed_unambiguously(head: bytes, head_request: bool) -> None:
    _check_framing(head, head_request)


@st.composite
def spaced_heads(draw: st.DrawFn) -> bytes:
    """A response head whose values have spaces and tabs around them and bytes beyond ASCII."""
    lines = [b"HTTP/1.1 200 OK"]
    for _ in range(draw(st.integers(0, 6))):
        name = draw(_TOKEN).encode()
        value = draw(st.binary(max_size=12).map(lambda b: bytes(c for c in b if c > 0x20)))
        before = draw(st.text(alphabet=" \t", max_size=3)).encode()
        after = draw(st.text(alphabet=" \t", max_size=3)).encode()
        lines.append(name + b":" + before + value + after)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Fields:
    """llhttp's own account of a head's fields: the reference ``header_fields`` must match."""

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        value_text = value.decode("utf-8", "surrogateescape").rstrip(" \t")  # (RFC 9110 5.5)
        self.fields.append((name.decode("utf-8", "surrogateescape"), value_text))

    def on_headers_complete(self) -> None:
        self.complete = True


@FUZZ
@given(
    head=st.one_of(heads().map(lambda case: case[0]), mutated_heads(), spaced_heads()),
    as_request=st.booleans(),
)
@example(head=b"HTTP/1.1 200 OK\r\nX:\t a \t\r\nY:\r\nZ: \t \r\nW: a:b\r\n\r\n", as_request=False)
@example(head=b"HTTP/1.1 200 OK\r\nX: \xff\xfe caf\xc3\xa9\r\n\r\n", as_request=True)
def test_header_fields_are_the_fields_llhttp_reads(head: bytes, as_request: bool) -> None:
    if as_request and b"\r\n" in head:  # the same fields behind a request line
        head = b"GET / HTTP/1.1" + head[head.index(b"\r\n") :]
    if head.find(b"\r\n\r\n") != len(head) - 4:
        return  # the callers cut a head at its first empty line
    reference = _Fields()
    kind = httptools.HttpRequestParser if as_request else httptools.HttpResponseParser
    parser = kind(reference)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass  # the head was read whole
    except httptools.HttpParserError:
        return
    if reference.complete:
        assert list(header_fields(head).items()) == reference.fields


def _encode_chunked(
    chunks: list[bytes], extensions: list[str], trailers: list[tuple[str, str]], upper: bool
) -> bytes:
    out = b""
    for i, chunk in enumerate(chunks):
        size = f"{len(chunk):x}"
        size = size.upper() if upper else size
        ext = extensions[i % len(extensions)] if extensions else ""
        out += f"{size}{ext}\r\n".encode() + chunk + b"\r\n"
    out += b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode() for n, v in trailers) + b"\r\n"
    return out


class _Collector:
    def __init__(self) -> None:
        self.body = b""
        self.complete = 0

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.complete += 1


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


@FUZZ
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=6),
    extensions=st.lists(st.sampled_from(["", ";a=b", ';q="x y"', ";z"]), max_size=2),
    trailers=st.lists(st.tuples(_TOKEN, _VALUE), max_size=2),
    upper=st.booleans(),
    data=st.data(),
)
def test_a_chunked_body_decodes_to_its_chunks_under_any_split(
    chunks: list[bytes],
    extensions: list[str],
    trailers: list[tuple[str, str]],
    upper: bool,
    data: st.DataObject,
) -> None:
    encoded = _encode_chunked(chunks, extensions, trailers, upper)
    cuts = data.draw(st.lists(st.integers(0, len(encoded)), max_size=10), label="cuts")
    collector = _Collector()
    parser = chunked_parser(collector)
    for piece in _splits(encoded, cuts):
        parser.feed_data(piece)
    assert collector.body == b"".join(chunks)
    assert collector.complete == 1


# -- the response reader, fed like a socket ------------------------------------------------


class _Owner:
    def release(self, connection: Connection) -> None:
        pass

    def forget(self, connection: Connection) -> None:
        pass


def _read(raw: bytes, cuts: list[int], head_request: bool) -> tuple[Any, ...]:
    """Feed ``raw`` to an UpstreamResponse in pieces, then the end of the stream; what came out."""

    async def scenario() -> tuple[Any, ...]:
        connection = Connection(_Owner())
        response = UpstreamResponse(connection, head_request=head_request, read_timeout=5)
        connection.response = response
        for piece in _splits(raw, cuts):
            if not piece:
                continue
            if connection.lost:
                break
            buffer = connection.get_buffer(len(piece))
            buffer[: len(piece)] = piece
            connection.buffer_updated(len(piece))
        connection.eof_received()
        error = response._error
        assert error is None or isinstance(error, BadUpstreamResponse), repr(error)
        body = b"".join(bytes(c) for c in response._chunks)
        head = (response.status, list(response.headers.items())) if response._framing else None
        return head, body, type(error).__name__ if error else None

    return asyncio.run(scenario())


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    head = draw(st.one_of(heads().map(lambda case: case[0]), mutated_heads()))
    if b"chunked" in head.lower() and draw(st.booleans()):
        chunks = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=3))
        body = _encode_chunked(chunks, [], [], upper=False)
    else:
        body = draw(st.binary(max_size=30))
    raw = head + body
    if draw(st.booleans()) and raw:  # a byte of the body or head garbled
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + draw(st.binary(max_size=2)) + raw[at + 1 :]
    return raw


@FUZZ
@given(raw=responses(), head_request=st.booleans(), data=st.data())
@example(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", head_request=False, data=None)
@example(raw=b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No\r\n\r\n", head_request=False, data=None)
def test_the_response_reader_ignores_how_the_bytes_arrive(
    raw: bytes, head_request: bool, data: st.DataObject | None
) -> None:
    one_piece = _read(raw, [], head_request)
    if len(raw) < 4096:  # a huge head read byte by byte is slow (its pending bytes are re-joined)
        assert _read(raw, list(range(1, len(raw))), head_request) == one_piece
    if data is not None:
        cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6), label="cuts")
        assert _read(raw, cuts, head_request) == one_piece


_PART = st.text(alphabet=st.sampled_from("ab/:? \t\r\n\0é"), min_size=1, max_size=6)


@FUZZ
@given(method=_PART, target=_PART, name=_PART, value=_PART)
def test_request_head_refuses_cr_lf_and_nul_anywhere(
    method: str, target: str, name: str, value: str
) -> None:
    parts = (method, target, name, value)
    if any(c in part for part in parts for c in "\r\n\0"):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            request_head(method, target, [("Host", "x"), (name, value)])
        return
    head = request_head(method, target, [("Host", "x"), (name, value)])
    assert head.count(b"\r\n") == 4
    assert head.endswith(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == f"{method} {target} HTTP/1.1".encode()


def test_the_reader_reports_a_parser_error_as_bad_upstream_response() -> None:
    """The chunked parser's own error type, which the reader must translate, is still this one."""
    parser = chunked_parser(_Collector())
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(b"zz\r\n")
    assert _read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", [], False)[2] == (
        "BadUpstreamResponse"
    )


def test_cimultidict_keeps_duplicates_for_body_framing() -> None:
    headers: CIMultiDict[str] = CIMultiDict([("Content-Length", "1"), ("content-length", "1")])
    with pytest.raises(BadUpstreamResponse):
        body_framing(200, head_request=False, headers=headers)
