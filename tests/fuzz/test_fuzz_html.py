"""Fuzzing the html rewriter with generated pages full of hostile URL, srcset and style values.

What is proven, for every valid prefix and every generated page (a full document or a fragment)
with URL attributes, srcset, meta refresh, base, ``style`` attributes and ``<style>`` blocks
whose values hold quotes, angle brackets, ampersands, ``</style>``, ``expression(``, CSS escapes
and hostile URLs:

- the output does not depend on how the body is cut into chunks;
- lxml finds in the output exactly the elements and attributes it finds in the input, in the same
  order: nothing escapes an attribute, no element appears or disappears, every ``<style>`` keeps
  its boundaries (its CSS has the same token structure), text is unchanged, attributes that carry
  no URL are unchanged, and every URL attribute holds what the URL policy says;
- it never raises.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import unquote

import lxml.html
import tinycss2
from fuzz_parts import FUZZ, UPSTREAM, hostile_urls, prefixes
from hypothesis import example, given
from hypothesis import strategies as st
from lxml import etree

from rproxy.rewriters.base import ResponseMeta, RewriteContext
from rproxy.rewriters.html import URL_ATTRIBUTES, HtmlRewriter
from rproxy.urls import UrlMapper

_HOSTILE = [
    '"',
    "'",
    "<",
    ">",
    "&",
    "&amp;",
    "&quot;",
    "&#34;",
    "&lt;/style&gt;",
    "</style>",
    "</script>",
    "<b>",
    "expression(",
    "\\3c /style\\3e",
    "\\3c",
    "\\22",
    "\\",
    "url(",
    ")",
    "(",
    ";",
    "}",
    "{",
    ",",
    " ",
    "\t",
    "\n",
    "é",
    "/x.png",
    "//evil.example/",
    "javascript:",
    "data:,",
    " 2x",
    " 100w",
]
_CSS = [
    "a{",
    "}",
    "b:",
    "url(",
    "url('",
    'url("',
    ")",
    "'",
    '"',
    "@import ",
    "image-set(",
    "-webkit-image-set(",
    " 1x",
    ",",
    ";",
    "expression(",
    "\\3c /style\\3e",
    "\\3C/STYLE\\3E",
    "\\",
    "<",
    ">",
    "&",
    "/*",
    "*/",
    " ",
    "\n",
    "/x.png",
    "//evil.example/",
    "src(",
    "\\29",
    "é",
]


_SPACE = " \t\n\r\x0c"


def _text(pieces: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=6).map("".join)


@st.composite
def _value(draw: st.DrawFn, prefix: str) -> str:
    """An attribute value: a hostile URL with hostile characters around it."""
    return draw(_text(_HOSTILE)) + draw(hostile_urls(prefix)) + draw(_text(_HOSTILE))


def _css(prefix: str) -> st.SearchStrategy[str]:
    """CSS text: structure pieces and hostile URLs, never a closing tag (it would end the
    ``<style>`` element in the input already)."""
    return (
        st.lists(st.one_of(st.sampled_from(_CSS), hostile_urls(prefix)), max_size=10)
        .map("".join)
        .filter(lambda css: "</" not in css and "\0" not in css)
    )


def _attr(value: str) -> str:
    return html.escape(value.replace("\0", ""), quote=True)


@st.composite
def _element(draw: st.DrawFn, prefix: str) -> str:
    def v() -> str:
        return _attr(draw(_value(prefix)))

    text = html.escape(draw(_text(_HOSTILE)), quote=False)
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return f'<a href="{v()}" title="{v()}">{text}</a>'
    if kind == 1:
        return f'<img src="{v()}" srcset="{v()}, {v()} 2x" alt="{v()}">'
    if kind == 2:
        return f'<link rel="stylesheet" href="{v()}" imagesrcset="{v()}">'
    if kind == 3:
        return f'<form action="{v()}"><button formaction="{v()}">{text}</button></form>'
    if kind == 4:
        delay = draw(st.sampled_from(["0", "5", " 1.5 ", "x"]))
        return f'<meta http-equiv="refresh" content="{delay}; url={v()}">'
    if kind == 5:
        return f'<base href="{v()}">'
    if kind == 6:
        return f'<div style="{_attr(draw(_css(prefix)))}" data-x="{v()}">{text}</div>'
    if kind == 7:
        return f"<style>{draw(_css(prefix))}</style>"
    return f'<video poster="{v()}"><source src="{v()}" type="{v()}"></video>{text}'


@st.composite
def pages(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(prefix, page, whether it is a full document)."""
    prefix = draw(prefixes)
    body = "".join(draw(st.lists(_element(prefix), min_size=1, max_size=6)))
    if draw(st.booleans()):
        head = "".join(draw(st.lists(_element(prefix), max_size=3)))
        page = f"<!DOCTYPE html><html><head><title>t</title>{head}</head><body>{body}</body></html>"
        return prefix, page, True
    return prefix, body, False


def _ctx(prefix: str) -> RewriteContext:
    meta = ResponseMeta(200, "text/html", "utf-8", "", "/")
    return RewriteContext(UrlMapper(prefix, UPSTREAM), meta, "hub.example")


def _rewrite(prefix: str, body: bytes, cuts: list[int]) -> bytes:
    rewriter = HtmlRewriter().open_body(_ctx(prefix))
    assert rewriter is not None
    out, start = [], 0
    for cut in [*sorted(cuts), len(body)]:
        out.append(rewriter.feed(body[start:cut]))
        start = cut
    out.append(rewriter.flush())
    return b"".join(out)


def _css_kinds(css: str) -> list[str]:
    kinds: list[str] = []

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            if isinstance(node, (tinycss2.ast.Comment, tinycss2.ast.ParseError)):
                continue
            kinds.append(type(node).__name__)
            for attr in ("content", "arguments"):
                inner = getattr(node, attr, None)
                if isinstance(inner, list):
                    walk(inner)

    walk(tinycss2.parse_component_value_list(css, skip_comments=False))
    return kinds


def _parse(page: str, document: bool) -> list[Any]:
    if document:
        return [lxml.html.document_fromstring(page)]
    return list(lxml.html.fragments_fromstring(page))


_C0 = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _compare(before: list[Any], after: list[Any], prefix: str) -> None:
    to_public = UrlMapper(prefix, UPSTREAM).public_mapper("hub.example")
    assert len(before) == len(after)
    for old_root, new_root in zip(before, after, strict=True):
        if isinstance(old_root, str):
            assert old_root == new_root
            continue
        old_all, new_all = list(old_root.iter()), list(new_root.iter())
        assert [e.tag for e in new_all] == [e.tag for e in old_all], "elements changed"
        for old, new in zip(old_all, new_all, strict=True):
            assert list(new.attrib) == list(old.attrib), f"attributes of <{old.tag}> changed"
            if old.tag in ("style", "script") or old.tag is etree.Comment:
                assert _css_kinds(new.text or "") == _css_kinds(old.text or "")
            else:
                assert new.text == old.text, f"text of <{old.tag}> changed"
            assert new.tail == old.tail
            for name, value in old.attrib.items():
                if "&{" in value and _C0.search(value):
                    # the one known loss (docs/security.md): lxml refuses to set a value with a C0
                    # control, so libxml2 writes its "&{...}" raw and character references inside
                    # come back decoded once; only the value differs (the structure is checked)
                    continue
                if name in URL_ATTRIBUTES:  # lxml writes them percent-encoded, leading space cut
                    got, want = unquote(new.get(name)), unquote(to_public(value))
                    assert got.strip(_SPACE) == want.strip(_SPACE), name
                elif name not in ("style", "srcset", "imagesrcset", "content"):
                    assert new.get(name) == value, name


@FUZZ
@given(page=pages(), data=st.data())
@example(
    page=("/p/", '<style>a{b:url("\\3c /style\\3e<b>")}</style><i>x</i>', False),
    data=None,
)
@example(page=("/p/", "<style>a{b:url(/x)}\x1f</style>", False), data=None)
@example(page=("/p/", '<a href="/a\x1fb">x</a><img srcset="/\x0b 2x">', False), data=None)
@example(page=("/p/", '<meta http-equiv="refresh" content="0; url=/\x1f">', False), data=None)
@example(page=("/", '<a href="&amp;{&amp;amp;}" title="&amp;{&amp;amp;}">x</a>', False), data=None)
@example(page=("/", '<p title="&{&amp;&#38;}" data-x="a&{&quot;}">&{&amp;}</p>', True), data=None)
@example(page=("/", '<a href="" title="\x0c&amp;{"></a>', False), data=None)
def test_pages_keep_their_structure_under_any_chunking(
    page: tuple[str, str, bool], data: st.DataObject | None
) -> None:
    prefix, text, document = page
    body = text.encode()
    if data is None:
        cuts: list[int] = []
    else:
        cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8), label="cuts")
    whole = _rewrite(prefix, body, [])
    assert _rewrite(prefix, body, cuts) == whole
    assert _rewrite(prefix, body, list(range(1, len(body)))) == whole  # 1-byte chunks
    _compare(_parse(text, document), _parse(whole.decode(), document), prefix)


@FUZZ
@given(
    page=st.text(alphabet="<>/=\"' &;#abcdefhilmnorstuxy\\3:()\n-!", max_size=120),
    doctype=st.booleans(),
)
def test_arbitrary_markup_never_raises_and_chunking_never_matters(page: str, doctype: bool) -> None:
    body = ("<!DOCTYPE html>" if doctype else "") + page
    whole = _rewrite("/p/", body.encode(), [])
    assert isinstance(whole, bytes)
    assert _rewrite("/p/", body.encode(), list(range(1, len(body.encode()), 3))) == whole
