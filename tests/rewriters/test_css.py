"""The css rewriter and the body pipeline: every url form, chunking, encodings, caps, failures."""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from typing import ClassVar

import aiohttp
import brotli
import pytest
import tinycss2
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict
from support import StartProxy, StartUpstream
from yarl import URL

from rproxy.rewriters.base import ResponseMeta, RewriteContext
from rproxy.rewriters.css import CssRewriter, rewrite_css
from rproxy.streams import BodyPipeline
from rproxy.urls import UrlMapper

MAPPER = UrlMapper("/user/alice/", URL("http://127.0.0.1:8888"))


@pytest.mark.parametrize(
    ("css", "expected"),
    [
        pytest.param("a{b:url(/x.png)}", "a{b:url(/user/alice/x.png)}", id="url"),
        pytest.param('a{b:url("/x.png")}', 'a{b:url("/user/alice/x.png")}', id="url-dq"),
        pytest.param("a{b:url('/x.png')}", 'a{b:url("/user/alice/x.png")}', id="url-sq"),
        pytest.param("a{b:url( /x.png )}", "a{b:url(/user/alice/x.png)}", id="url-spaces"),
        pytest.param("a{b:url(x.png)}", "a{b:url(x.png)}", id="relative"),
        pytest.param("a{b:url(data:x/y,1)}", "a{b:url(data:x/y,1)}", id="data"),
        pytest.param('@import "/a.css";', '@import "/user/alice/a.css";', id="import-string"),
        pytest.param(
            "@import url(/a.css) print;", "@import url(/user/alice/a.css) print;", id="import-url"
        ),
        pytest.param(
            'a{b:image-set("/a.png" 1x, url(/b.png) 2x)}',
            'a{b:image-set("/user/alice/a.png" 1x, url(/user/alice/b.png) 2x)}',
            id="image-set",
        ),
        pytest.param(
            '@font-face{src:url(/f.woff2) format("woff2")}',
            '@font-face{src:url(/user/alice/f.woff2) format("woff2")}',
            id="font-face",
        ),
        pytest.param(
            "@media screen{a{b:url(/m.png)}}",
            "@media screen{a{b:url(/user/alice/m.png)}}",
            id="nested",
        ),
        pytest.param('a{content:"/not-a-url"}', 'a{content:"/not-a-url"}', id="plain-string"),
        pytest.param("a{b:url(//cdn.example/x)}", "a{b:url(//cdn.example/x)}", id="other-origin"),
    ],
)
def test_css_url_forms(css: str, expected: str) -> None:
    assert rewrite_css(css, MAPPER.to_public) == expected


def test_style_attribute_declarations() -> None:
    style = "background: url(/bg.png) no-repeat; color: red"
    assert rewrite_css(style, MAPPER.to_public) == (
        "background: url(/user/alice/bg.png) no-repeat; color: red"
    )


def _tokens(css: str) -> list[str]:
    """The kinds of all tokens, nested blocks flattened, for comparing structure.

    Comments are left out: tinycss2 writes an empty one between two tokens that would otherwise
    merge when read back, which is how a rewritten value is kept from joining its neighbour.
    Parse errors are left out too: a string or url left open at the end of the input comes back
    closed, which CSS treats the same.
    """
    kinds: list[str] = []

    def walk(nodes: list[object]) -> None:
        for node in nodes:
            if isinstance(node, (tinycss2.ast.Comment, tinycss2.ast.ParseError)):
                continue
            kinds.append(type(node).__name__)
            for attr in ("prelude", "content", "arguments"):
                value = getattr(node, attr, None)
                if isinstance(value, list):
                    walk(value)

    walk(tinycss2.parse_component_value_list(css, skip_comments=False))
    return kinds


@given(st.text(alphabet="/\\\"'(){};:@ urlimageset-x.", max_size=60))
def test_rewriting_never_changes_the_token_structure(css: str) -> None:
    hostile = "/p/\")}body{x:url(/evil) '\\"
    out = rewrite_css(css, lambda url: hostile + url if url.startswith("/") else url)
    assert _tokens(out) == _tokens(css)


def _ctx(**options: int) -> RewriteContext:
    return RewriteContext(MAPPER, ResponseMeta(200, "text/css", None, "", "/a.css"), None, options)


CSS = ("@import '/a.css';\n" + "a{background:url(/x.png)} " * 200).encode()


@pytest.mark.parametrize("size", [1, 7, 4096, len(CSS)])
def test_output_does_not_depend_on_chunking(size: int) -> None:
    def run() -> bytes:
        body = CssRewriter().open_body(_ctx())
        assert body is not None
        pipeline = BodyPipeline([("css", body)], "", Counter())
        chunks = [CSS[i : i + size] for i in range(0, len(CSS), size)]
        return b"".join(pipeline.feed(c) for c in chunks) + pipeline.flush()

    out = run()
    assert out.count(b"/user/alice/x.png") == 200
    assert b'@import "/user/alice/a.css"' in out


def test_oversized_stylesheets_pass_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    body = CssRewriter().open_body(_ctx(max_bytes=100))
    assert body is not None
    pipeline = BodyPipeline([("css", body)], "", Counter())
    out = (
        b"".join(pipeline.feed(CSS[i : i + 64]) for i in range(0, len(CSS), 64)) + pipeline.flush()
    )
    assert out == CSS
    assert any("passed through unchanged" in r.getMessage() for r in caplog.records)


COMPRESS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
}
DECOMPRESS = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "br": brotli.decompress,
}


async def _serve_css(start_upstream: StartUpstream, encoding: str = "") -> URL:
    async def sheet(request: web.Request) -> web.Response:
        body = COMPRESS[encoding](CSS) if encoding else CSS
        headers = {"Content-Type": "text/css; charset=utf-8"}
        if encoding:
            headers["Content-Encoding"] = encoding
        return web.Response(body=body, headers=headers)

    async def events(request: web.Request) -> web.Response:
        return web.Response(body=b"data: /x\n\n", headers={"Content-Type": "text/event-stream"})

    app = web.Application()
    app.router.add_get("/a.css", sheet)
    app.router.add_get("/events", events)
    return await start_upstream(app)


@pytest.mark.parametrize(
    "encoding", ["", "gzip", "deflate", "br"], ids=["identity", "gzip", "deflate", "br"]
)
async def test_stylesheets_are_rewritten_through_the_proxy_in_any_encoding(
    encoding: str,
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
) -> None:
    proxy = await start_proxy(await _serve_css(start_upstream, encoding), prefix="/user/alice/")
    async with http.get(proxy / "user/alice/a.css") as resp:
        raw = await resp.read()
        assert "Content-Length" not in resp.headers
        assert resp.headers.get("Content-Encoding", "") == encoding
    css = DECOMPRESS[encoding](raw) if encoding else raw
    assert css.count(b"url(/user/alice/x.png)") == 200


async def test_event_streams_and_head_requests_are_never_rewritten(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await _serve_css(start_upstream), prefix="/user/alice/")
    async with http.get(proxy / "user/alice/events") as resp:
        assert await resp.read() == b"data: /x\n\n"
    async with http.head(proxy / "user/alice/a.css") as resp:
        assert resp.headers["Content-Length"] == str(len(CSS))


class _FailsAtTheEnd:
    name: ClassVar[str] = "fails"

    def matches(self, meta: ResponseMeta) -> bool:
        return True

    def rewrite_headers(self, headers: CIMultiDict[str], ctx: RewriteContext) -> None:
        return None

    def open_body(self, ctx: RewriteContext) -> _FailsAtTheEnd:
        return self

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def flush(self) -> bytes:
        raise ValueError("broken plugin")


async def test_a_body_rewriter_failing_midway_aborts_the_response(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    upstream = await _serve_css(start_upstream)
    proxy = await start_proxy(upstream, rewriter_instances=[_FailsAtTheEnd()])
    async with http.get(proxy / "a.css") as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


@pytest.mark.parametrize(
    "css",
    [
        pytest.param('a{content:"\\3c /style>"}', id="string"),
        pytest.param("a{background:url(\\3c /style\\3e)}", id="url"),
        pytest.param('a{b:url("/x\\3c /style\\3e")}', id="rewritten-url"),
        pytest.param("a{b:image-set('\\3C/STYLE\\3E' 1x)}", id="image-set-caps"),
    ],
)
def test_escaped_markup_never_comes_back_as_markup(css: str) -> None:
    # Embedded in <style>, a literal "</style>" would end the element: escapes must stay escapes.
    out = rewrite_css(css, MAPPER.to_public)
    assert "<" not in out
    assert ">" not in out


@given(st.text(alphabet="\\3cCeE/style>\"'(){}u rl:;a-", max_size=50))
def test_no_closing_tag_appears_that_was_not_in_the_input(css: str) -> None:
    out = rewrite_css(css, lambda url: "/p/" + url)
    if "</" not in css:
        assert "</" not in out
