"""atheris (libFuzzer) on the HTTP/1.1 parsing that faces the upstream (rproxy/http1.py).

Each input is read as a response head, then as a chunked body. Checked for every input:
``parse_response_head`` + ``body_framing`` either succeed unambiguously or raise
BadUpstreamResponse; the chunked parser either raises httptools.HttpParserError or decodes, and
decodes the same bytes the same way when they arrive in two pieces. Anything else is a crash
that libFuzzer reports with the input that caused it.

Run it for as long as you like (libFuzzer options; a corpus directory keeps what it learns)::

    .venv/bin/python tests/fuzz/atheris_http1.py -max_total_time=600 [CORPUS_DIR]

tests/fuzz/test_atheris.py runs it briefly in CI when atheris is installed (Linux x86_64).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["rproxy"]):
    import httptools

    from rproxy.errors import BadUpstreamResponse
    from rproxy.http1 import Framing, body_framing, chunked_parser, parse_response_head


class _Collector:
    def __init__(self) -> None:
        self.body = b""
        self.complete = 0

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.complete += 1


def _decode(pieces: list[bytes]) -> tuple[bytes, int, bool]:
    collector = _Collector()
    parser = chunked_parser(collector)
    try:
        for piece in pieces:
            parser.feed_data(piece)
    except httptools.HttpParserError:
        return collector.body, collector.complete, True
    return collector.body, collector.complete, False


def _check_head(data: bytes) -> None:
    try:
        head = parse_response_head(data)
        framing, length = body_framing(head.status, head_request=False, headers=head.headers)
    except BadUpstreamResponse:
        return
    lengths = head.headers.getall("Content-Length", [])
    codings = head.headers.getall("Transfer-Encoding", [])
    if framing is Framing.LENGTH:
        assert len(lengths) == 1
        assert not codings
        assert int(lengths[0]) == length
    elif framing is Framing.CHUNKED:
        assert not lengths
        assert codings[-1].rsplit(",", 1)[-1].strip().lower() == "chunked"
    elif framing is Framing.CLOSE:
        assert not lengths


def test_one_input(data: bytes) -> None:
    _check_head(data)
    _check_head(b"HTTP/1.1 200 OK\r\n" + data + b"\r\n\r\n")
    whole = _decode([data])
    cut = data[0] % (len(data) + 1) if data else 0
    split = _decode([data[:cut], data[cut:]])
    if (not whole[2] and not split[2]) or whole[1] or split[1]:
        assert whole == split, (whole, split)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
