"""The html rewriter: URL-bearing attributes, srcset, meta refresh, style, import maps, safety."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable
from urllib.parse import unquote

import aiohttp
import brotli
import lxml.html
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import StartProxy, StartUpstream
from yarl import URL

from examples.demo.app import make_demo_app
from rproxy.rewriters.base import ResponseMeta, RewriteContext
from rproxy.rewriters.html import (
    URL_ATTRIBUTES,
    HtmlParsers,
    HtmlRewriter,
    rewrite_html_bytes,
    rewrite_srcset,
)
from rproxy.streams import BodyPipeline
from rproxy.urls import UrlMapper

MAPPER = UrlMapper("/user/alice/", URL("http://127.0.0.1:8888"))


def _rewrite(page: str, charset: str | None = "utf-8") -> str:
    ctx = RewriteContext(MAPPER, ResponseMeta(200, "text/html", charset, "", "/"))
    return rewrite_html_bytes(page.encode(charset or "utf-8"), ctx).decode(charset or "utf-8")


def _doc(body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>"


@pytest.mark.parametrize("attribute", sorted(URL_ATTRIBUTES))
def test_every_url_attribute_follows_the_url_policy(attribute: str) -> None:
    out = _rewrite(_doc(f'<x-el {attribute}="/a?b=1" class="/not-a-url"></x-el>'))
    element = lxml.html.document_fromstring(out).find(".//x-el")
    assert element.get(attribute) == "/user/alice/a?b=1"
    assert element.get("class") == "/not-a-url"


@pytest.mark.parametrize(
    ("srcset", "expected"),
    [
        pytest.param("/a.png", "/p/a.png", id="single"),
        pytest.param("/a.png 1x, /b.png 2x", "/p/a.png 1x, /p/b.png 2x", id="x"),
        pytest.param("/a.png 100w,/b.png 200w", "/p/a.png 100w,/p/b.png 200w", id="w"),
        pytest.param(
            "data:x;base64,A,B 1x, /c.png 2x", "data:x;base64,A,B 1x, /p/c.png 2x", id="data"
        ),
        pytest.param(
            "rel.png 1x, https://cdn/x.png 2x", "rel.png 1x, https://cdn/x.png 2x", id="kept"
        ),
        pytest.param("/a.png,, /b.png", "/p/a.png,, /p/b.png", id="empty-candidate"),
    ],
)
def test_srcset_candidates(srcset: str, expected: str) -> None:
    assert rewrite_srcset(srcset, UrlMapper("/p/", URL("http://up")).to_public) == expected


def test_meta_base_style_and_import_map() -> None:
    out = _rewrite(
        "<!DOCTYPE html><html><head>"
        '<meta http-equiv="Refresh" content="3;url=/next">'
        '<base href="/">'
        "<style>body{background:url(/bg.png)}</style>"
        '<script type="importmap">{"imports": {"a": "/a.js", "b": "https://cdn/b.js"},'
        ' "scopes": {"/s/": {"c": "/c.js"}}}</script>'
        '</head><body style="background-image:url(/x.png)"></body></html>'
    )
    doc = lxml.html.document_fromstring(out)
    assert doc.find(".//meta").get("content") == "3;url=/user/alice/next"
    assert doc.find(".//base").get("href") == "/user/alice/"
    assert doc.find(".//style").text == "body{background:url(/user/alice/bg.png)}"
    assert doc.find(".//body").get("style") == "background-image:url(/user/alice/x.png)"
    import_map = json.loads(doc.find(".//script").text)
    assert import_map == {
        "imports": {"a": "/user/alice/a.js", "b": "https://cdn/b.js"},
        "scopes": {"/user/alice/s/": {"c": "/user/alice/c.js"}},
    }


def test_a_repeated_style_is_rewritten_for_each_page_and_prefix() -> None:
    style = 'background:url("/x.png")'
    page = _doc(f"<p style='{style}'></p><i style='{style}'></i><b style=\"color:red\"></b>")
    for prefix in ("/user/alice/", "/user/bob/"):
        ctx = RewriteContext(
            UrlMapper(prefix, URL("http://127.0.0.1:8888")),
            ResponseMeta(200, "text/html", "utf-8", "", "/"),
        )
        doc = lxml.html.document_fromstring(rewrite_html_bytes(page.encode(), ctx))
        styles = [element.get("style") for element in doc.iter("p", "i", "b")]
        assert styles == [f'background:url("{prefix}x.png")'] * 2 + ["color:red"]


def test_doctype_comments_and_scripts_are_kept() -> None:
    script = 'if (a < b && c) { document.write("</div>"); }'
    out = _rewrite(
        f"<!DOCTYPE html><html><head><!-- note --><script>{script}</script></head></html>"
    )
    assert out.startswith("<!DOCTYPE html>")
    assert "<!-- note -->" in out
    assert f"<script>{script}</script>" in out


def test_a_fragment_stays_a_fragment() -> None:
    assert _rewrite('<div><a href="/x">x</a></div>') == '<div><a href="/user/alice/x">x</a></div>'


def test_the_page_keeps_its_own_encoding() -> None:
    page = '<html><head><meta charset="iso-8859-1"></head><body><a href="/é">é</a></body></html>'
    out = _rewrite(page, charset="iso-8859-1")
    assert '<a href="/user/alice/%C3%A9">é</a>' in out, "lxml writes URL paths percent-encoded"
    assert not out.startswith("<!DOCTYPE"), "no DOCTYPE is invented"


def test_an_undeclared_utf8_page_is_read_as_utf8() -> None:
    out = _rewrite('<html><body><a href="/é">é</a></body></html>', charset=None)
    assert '<a href="/user/alice/%C3%A9">é</a>' in out


def test_import_map_values_cannot_close_the_script() -> None:
    out = _rewrite(
        '<html><head><script type="importmap">{"imports": {"a": "/\\u003c/script>"}}</script>'
        "</head></html>"
    )
    assert out.count("</script>") == 1
    assert "/user/alice/\\u003c/script>" in out


@given(st.text(max_size=40))
def test_an_upstream_value_never_leaves_its_attribute(value: str) -> None:
    value = "".join(c for c in value if c.isprintable())
    page = _doc('<a id="target" href="/placeholder">x</a><b>after</b>')
    doc = lxml.html.document_fromstring(page)
    doc.get_element_by_id("target").set("href", "/" + value)
    page = lxml.html.tostring(doc, doctype="<!DOCTYPE html>", encoding="unicode")
    sent = lxml.html.document_fromstring(page).get_element_by_id("target").get("href")
    out = _rewrite(page)
    parsed = lxml.html.document_fromstring(out)
    anchors = parsed.findall(".//a")
    assert len(anchors) == 1
    assert list(anchors[0].attrib) == ["id", "href"]
    # lxml writes URL attributes percent-encoded (as browsers request them): compare decoded.
    assert unquote(anchors[0].get("href")) == unquote(MAPPER.to_public(sent))
    assert parsed.find(".//b").text == "after"


@given(st.text(alphabet="<>/=\"' abcdefhimorstyl!-&;#", max_size=80))
def test_malformed_html_never_crashes(page: str) -> None:
    assert isinstance(_rewrite(page), str)


async def test_the_demo_page_works_under_a_prefix(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    proxy = await start_proxy(await start_upstream(make_demo_app()), prefix="/user/me/")
    async with http.get(proxy / "user/me/") as resp:
        page = await resp.text()
    doc = lxml.html.document_fromstring(page)
    resources = [el.get("href") or el.get("src") for el in doc.iter("link", "script", "img", "a")]
    resources = [r for r in resources if r]
    assert resources
    assert all(r.startswith("/user/me/") for r in resources), resources
    for resource in resources:
        async with http.get(proxy.with_path(resource.split("?")[0])) as resp:
            assert resp.status == 200, resource


def test_parsers_reused_across_responses_keep_no_state_between_them() -> None:
    # One HtmlParsers serves every response of an app; each page must come out as if parsed alone.
    pages = [
        ("<html><body><a href='/x'><b>unclosed <i>tags", "utf-8"),
        (_doc("<a href='/caf\u00e9'>caf\u00e9</a>"), "iso-8859-1"),
        (_doc("<img src='/a.png'><p id=dup><p id=dup>"), None),
        ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>\u00fc</body>", None),
        ("<html><body><a href='/x'><b>unclosed <i>tags", "utf-8"),
    ]
    shared = HtmlParsers()
    for page, charset in pages:
        ctx = RewriteContext(MAPPER, ResponseMeta(200, "text/html", charset, "", "/"))
        body = page.encode(charset or "utf-8")
        assert rewrite_html_bytes(body, ctx, shared) == rewrite_html_bytes(body, ctx)


PAGE = _doc(
    "<!-- /kept -->"
    + "".join(f"<a href='/p{i}'>caf\u00e9 {i}</a><img srcset='/i{i}.png 2x'>" for i in range(300))
).encode()


@pytest.mark.parametrize("size", [1, 7, 4096, len(PAGE)])
@pytest.mark.parametrize(
    ("encoding", "encode", "decode"),
    [
        pytest.param("", bytes, bytes, id="identity"),
        pytest.param("gzip", gzip.compress, gzip.decompress, id="gzip"),
        pytest.param("br", brotli.compress, brotli.decompress, id="br"),
    ],
)
def test_output_does_not_depend_on_chunking_or_encoding(
    size: int, encoding: str, encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    ctx = RewriteContext(MAPPER, ResponseMeta(200, "text/html", "utf-8", encoding, "/"))
    body = HtmlRewriter().open_body(ctx)
    assert body is not None
    pipeline = BodyPipeline([("html", body)], encoding, Counter())
    data = encode(PAGE)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    out = decode(b"".join(pipeline.feed(c) for c in chunks) + pipeline.flush())
    assert out == rewrite_html_bytes(PAGE, ctx)
    assert out.count(b'href="/user/alice/p') == 300
    assert out.count(b'srcset="/user/alice/i') == 300
