"""Fuzzing the css rewriter with generated stylesheets full of hostile URLs.

What is proven, for generated stylesheets with ``url()`` (bare and quoted), ``src()``,
``@import``, ``image-set()`` and ``-webkit-image-set()`` whose values hold quotes, parentheses,
backslashes, CSS escapes, newlines, angle brackets and hostile URLs, rewritten with the real URL
policy under a generated prefix or with a mapper that returns the most hostile text it can:

- tinycss2 reads the output as the same tokens in the same nesting, with the same values, except
  that every URL value is exactly what the mapper made of it (compared by value, not by text:
  tinycss2 writes a token's stored representation, so the rewriter must build new tokens);
- no ``<`` or ``>`` appears that was not in the input (no ``</style>`` from an escape);
- the body rewriter's output does not depend on chunking, multi-byte characters split included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import tinycss2
from fuzz_parts import FUZZ, UPSTREAM, hostile_urls, prefixes
from hypothesis import example, given
from hypothesis import strategies as st
from tinycss2 import ast
from tinycss2.serializer import serialize_string_value, serialize_url

from rproxy.rewriters.base import ResponseMeta, RewriteContext
from rproxy.rewriters.css import CssRewriter, rewrite_css
from rproxy.urls import UrlMapper

_HOSTILE_MAPPED = "/p/\")}</style><b>body{x:url(/evil) '\\\n\\3c "

_NOISE = ['"', "'", "(", ")", "\\", "\\3c /style\\3e", "\\29 ", "\n", " ", "<", ">", "é", ";", "}"]
_FILLER = ["a{", "}", "b:", ";", " ", "\n", "x", ",", "/**/", "@media screen{", "1px", "!important"]


def _quoted(url: str) -> str:
    return f'"{serialize_string_value(url)}"'


@st.composite
def _url_value(draw: st.DrawFn, prefix: str) -> str:
    core = draw(hostile_urls(prefix))
    noise = "".join(draw(st.lists(st.sampled_from(_NOISE), max_size=3)))
    return draw(st.sampled_from([core, noise + core, core + noise]))


@st.composite
def _url_form(draw: st.DrawFn, prefix: str) -> str:
    url, other = draw(_url_value(prefix)), draw(_url_value(prefix))
    forms = [
        f"url({serialize_url(url)})",
        f"url({_quoted(url)})",
        f"url('{url}')",  # unescaped: whatever the tokenizer makes of it
        f"url({url})",
        f"src({_quoted(url)})",
        f"@import {_quoted(url)};",
        f"@import url({serialize_url(url)}) screen;",
        f"image-set({_quoted(url)} 1x, url({serialize_url(other)}) 2x)",
        f"-webkit-image-set({_quoted(url)} 1x, {_quoted(other)} 2x)",
        f"a{{content:{_quoted(url)}}}",  # a string that is no URL stays as it was
    ]
    return draw(st.sampled_from(forms))


@st.composite
def stylesheets(draw: st.DrawFn) -> tuple[str, str]:
    prefix = draw(prefixes)
    parts = draw(
        st.lists(st.one_of(_url_form(prefix), st.sampled_from(_FILLER)), min_size=1, max_size=8)
    )
    return prefix, "".join(parts)


def _values(css: str, mapper: Callable[[str], str] | None) -> list[tuple[str, Any]]:
    """The tokens of ``css`` as (kind, value), nesting marked; with ``mapper``, every URL value
    replaced by what the mapper makes of it: the expected output."""
    out: list[tuple[str, Any]] = []

    def url(value: str) -> str:
        return mapper(value) if mapper is not None else value

    def walk(nodes: list[Any]) -> None:
        importing = False
        for node in nodes:
            if isinstance(node, (ast.Comment, ast.ParseError)):
                continue
            kind = type(node).__name__
            if isinstance(node, ast.URLToken):
                out.append((kind, url(node.value)))
            elif isinstance(node, ast.StringToken):
                out.append((kind, url(node.value) if importing else node.value))
                importing = False
            elif isinstance(node, ast.FunctionBlock):
                out.append((kind, node.lower_name))
                walk_function(node)
                out.append(("end", kind))
            elif isinstance(
                node, (ast.ParenthesesBlock, ast.SquareBracketsBlock, ast.CurlyBracketsBlock)
            ):
                out.append((kind, None))
                walk(node.content)
                out.append(("end", kind))
            elif isinstance(node, ast.WhitespaceToken):
                out.append((kind, None))
            else:
                out.append((kind, getattr(node, "representation", None) or node.serialize()))
            if isinstance(node, ast.AtKeywordToken):
                importing = node.lower_value == "import"
            elif isinstance(node, (ast.LiteralToken, ast.CurlyBracketsBlock)) and node != ",":
                importing = False

    def walk_function(node: Any) -> None:
        args = node.arguments
        if node.lower_name in ("url", "src"):
            first = next((i for i, n in enumerate(args) if isinstance(n, ast.StringToken)), -1)
            args = [_as_url(n, url) if i == first else n for i, n in enumerate(args)]
        elif node.lower_name in ("image-set", "-webkit-image-set"):
            args = [_as_url(n, url) if isinstance(n, ast.StringToken) else n for n in args]
        walk(args)

    walk(tinycss2.parse_component_value_list(css, skip_comments=False))
    return out


def _as_url(node: ast.StringToken, url: Callable[[str], str]) -> ast.StringToken:
    value = url(node.value)
    return ast.StringToken(node.source_line, node.source_column, value, _quoted(value))


def _mappers(prefix: str) -> Iterator[Callable[[str], str]]:
    yield UrlMapper(prefix, UPSTREAM).public_mapper("hub.example")
    yield lambda url: _HOSTILE_MAPPED + url if url.startswith("/") else url


@FUZZ
@given(sheet=stylesheets())
@example(sheet=("/p/", "a{b:url('\\3c /style\\3e')}"))
@example(sheet=("/p/", "@import '/a.css' screen, '/b.css';"))
@example(sheet=("/", "url(https:/\\evil.example\\@127.0.0.1:8888)"))
@example(sheet=("/p/", "a{b:url(/\\1 x)}"))
@example(sheet=("/p/", "a{b:\\3c /style\\3e \\3c img src=x onerror=alert(1)\\3e}"))
@example(sheet=("/p/", "a{b:\\\\<x \\\\\\3c}"))
def test_only_url_values_change_and_exactly_as_the_mapper_says(sheet: tuple[str, str]) -> None:
    prefix, css = sheet
    for mapper in _mappers(prefix):
        out = rewrite_css(css, mapper)
        assert _values(out, None) == _values(css, mapper)
        assert out.count("<") <= css.count("<")
        assert out.count(">") <= css.count(">")


@FUZZ
@given(sheet=stylesheets(), data=st.data())
def test_the_body_rewriter_ignores_chunking(sheet: tuple[str, str], data: st.DataObject) -> None:
    prefix, css = sheet
    body = ("\ufeff" if data.draw(st.booleans(), label="bom") else "") + css
    raw = body.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6), label="cuts"))
    ctx = RewriteContext(
        UrlMapper(prefix, UPSTREAM),
        ResponseMeta(200, "text/css", None, "", "/a.css"),
        "hub.example",
    )

    def run(points: list[int]) -> bytes:
        rewriter = CssRewriter().open_body(ctx)
        assert rewriter is not None
        pieces, start = [], 0
        for cut in [*points, len(raw)]:
            pieces.append(rewriter.feed(raw[start:cut]))
            start = cut
        return b"".join(pieces) + rewriter.flush()

    whole = run([])
    assert run(cuts) == whole
    assert run(list(range(1, len(raw)))) == whole
