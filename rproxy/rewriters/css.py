"""The ``css`` rewriter (tinycss2): ``url(...)`` in all its forms, ``@import``, ``image-set()``.

A stylesheet is parsed into tokens, each URL goes through the URL policy, and the token is
replaced by a new one serialised by tinycss2 (never pasted as text), so a rewritten value cannot
close its token: tinycss2 writes a token's stored representation, which is why changed tokens are
built anew rather than edited. Everything else is written back by tinycss2 as it was parsed
(equivalent CSS: escapes and quotes may be normalised, and a block left open at the end of the
file is closed). The encoding is the stylesheet's own (BOM,
``@charset``, the header's charset). ``rewrite_css`` is also what the HTML rewriter uses for
``style`` attributes and ``<style>`` blocks. Stylesheets are buffered up to the configured cap;
a larger one passes through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import tinycss2
from multidict import CIMultiDict
from tinycss2 import ast
from tinycss2.bytes import decode_stylesheet_bytes
from tinycss2.serializer import serialize_string_value, serialize_url

from rproxy.rewriters.base import BodyRewriter, ResponseMeta, RewriteContext
from rproxy.rewriters.buffered import buffered

Mapper = Callable[[str], str]
_BOM = b"\xef\xbb\xbf"
_IMAGE_SETS = frozenset({"image-set", "-webkit-image-set"})
_NON_PRINTABLE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_ESCAPED_MARKUP = re.compile(r"(?<!\\)((?:\\\\)*)\\([<>])")


class CssRewriter:
    name: ClassVar[str] = "css"

    def matches(self, meta: ResponseMeta) -> bool:
        return meta.mime_type == "text/css"

    def rewrite_headers(self, headers: CIMultiDict[str], ctx: RewriteContext) -> None:
        return None

    def open_body(self, ctx: RewriteContext) -> BodyRewriter | None:
        return buffered(self.name, ctx, lambda body: rewrite_css_bytes(body, ctx))


def rewrite_css_bytes(body: bytes, ctx: RewriteContext) -> bytes:
    """A whole stylesheet, rewritten, in its own encoding."""
    text, encoding = decode_stylesheet_bytes(body, protocol_encoding=ctx.meta.charset)
    bom = _BOM if body.startswith(_BOM) else b""
    return bom + rewrite_css(text, ctx.public_url).encode(encoding.codec_info.name)


def rewrite_css(css: str, mapper: Mapper) -> str:
    """CSS text (a stylesheet, a ``<style>`` block or a ``style`` attribute), rewritten.

    It is read as a list of component values, not as rules, so that malformed CSS still comes
    back whole: tinycss2 cannot write back the rule-level parse errors of broken stylesheets.
    """
    nodes = tinycss2.parse_component_value_list(css, skip_comments=False)
    rewritten: str = tinycss2.serialize(_rewrite_nodes(nodes, mapper))
    # tinycss2 writes an escaped "<" or ">" in an identifier (``\3c /style\3e``) as ``\<`` and
    # ``\>``: a literal "</style" that would end the <style> element this CSS is embedded in.
    return _ESCAPED_MARKUP.sub(lambda m: m[1] + ("\\3c " if m[2] == "<" else "\\3e "), rewritten)


def _rewrite_nodes(nodes: list[Any], mapper: Mapper) -> list[Any]:
    out: list[Any] = []
    importing = False  # after @import, until its first string or the end of the rule
    for node in nodes:
        if importing and isinstance(node, ast.StringToken):
            node, importing = _string(node, mapper), False
        elif isinstance(node, ast.AtKeywordToken):
            importing = node.lower_value == "import"
        elif isinstance(node, (ast.LiteralToken, ast.CurlyBracketsBlock)) and node != ",":
            importing = False
        out.append(_rewrite_node(node, mapper))
    return out


def _rewrite_node(node: Any, mapper: Mapper) -> Any:
    if isinstance(node, ast.URLToken):
        return _url_token(node, mapper)
    if isinstance(node, ast.StringToken):
        return _string_token(node, node.value)
    if isinstance(node, ast.FunctionBlock):
        name = node.lower_name
        if name == "url" or name == "src":
            node.arguments = _first_string_rewritten(node.arguments, mapper)
        elif name in _IMAGE_SETS:
            node.arguments = [_string(a, mapper) for a in node.arguments]
        node.arguments = _rewrite_nodes(node.arguments, mapper)
    elif isinstance(node, (ast.ParenthesesBlock, ast.SquareBracketsBlock, ast.CurlyBracketsBlock)):
        node.content = _rewrite_nodes(node.content, mapper)
    return node


def _first_string_rewritten(nodes: list[Any], mapper: Mapper) -> list[Any]:
    first = next((i for i, n in enumerate(nodes) if isinstance(n, ast.StringToken)), -1)
    return [_string(node, mapper) if i == first else node for i, node in enumerate(nodes)]


def _url_token(token: ast.URLToken, mapper: Mapper) -> ast.URLToken:
    url = mapper(token.value)
    # serialize_url leaves non-printable characters raw: in an unquoted url() they make a bad URL
    serialized = _NON_PRINTABLE.sub(lambda m: f"\\{ord(m[0]):x} ", serialize_url(url))
    representation = f"url({_no_markup(serialized)})"
    return ast.URLToken(token.source_line, token.source_column, url, representation)


def _string(token: Any, mapper: Mapper) -> Any:
    if not isinstance(token, ast.StringToken):
        return token
    return _string_token(token, mapper(token.value))


def _string_token(token: ast.StringToken, value: str) -> ast.StringToken:
    representation = f'"{_no_markup(serialize_string_value(value))}"'
    return ast.StringToken(token.source_line, token.source_column, value, representation)


def _no_markup(serialized: str) -> str:
    """CSS escapes for ``<`` and ``>``: tinycss2 writes ``\\3c /style>`` back as a literal
    ``</style>``, which would end a ``<style>`` element that this CSS is embedded in."""
    return serialized.replace("<", "\\3c ").replace(">", "\\3e ")
