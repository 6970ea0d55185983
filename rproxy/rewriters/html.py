"""The ``html`` rewriter (lxml): URLs in attributes, srcset, meta refresh, style, import maps.

A page is parsed with lxml's HTML parser (it recovers from malformed markup), every URL-bearing
attribute goes through the URL policy, ``style`` attributes and ``<style>`` blocks go through the
css rewriter, ``<meta http-equiv=refresh>``, ``<base href>`` and ``<script type=importmap>`` are
rewritten, and lxml serialises the result, escaping every attribute value, in the page's own
encoding. The DOCTYPE, comments and script contents are kept; the markup comes back equivalent,
not byte-identical: entities may be written as characters, empty elements get end tags, and
lxml percent-encodes non-ASCII characters in URL attributes as UTF-8 (what browsers send for
paths; for a query in a page that is not UTF-8, browsers would use the page's encoding).
Pages are buffered up to the configured cap; a larger page passes through unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import quote

import lxml.html
from lxml import etree
from multidict import CIMultiDict

from rproxy.rewriters.base import BodyRewriter, ResponseMeta, RewriteContext
from rproxy.rewriters.buffered import buffered
from rproxy.rewriters.css import rewrite_css
from rproxy.rewriters.headers import rewrite_refresh

Mapper = Callable[[str], str]
URL_ATTRIBUTES = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "poster",
        "data",
        "background",
        "cite",
        "longdesc",
        "manifest",
        "icon",
        "ping",
        "xlink:href",
    }
)
SRCSET_ATTRIBUTES = frozenset({"srcset", "imagesrcset"})
_CONTENT_TAGS = ("style", "meta", "script")
_DOCUMENT = re.compile(rb"<(?:!doctype|html|head|body)[\s>]", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!doctype[\s>]", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+charset", re.IGNORECASE)
# What lxml's parser keeps from a page but its API refuses to set: C0 controls, U+FFFE, U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# libxml2 writes "&{...}" in an attribute value raw (Netscape's JavaScript entities), so an "&amp;"
# inside would come back decoded once. Such values are serialised with a noncharacter standing in
# for each "&", and the stand-in's serialised forms are then replaced by "&amp;".
_BRACED_ENTITY = re.compile(rb"&(?:amp;|#0*38;|#x0*26;)?\{", re.IGNORECASE)
_AMP = "\ufdd0"
# What lxml.html.tostring removes from what etree.tostring writes (lxml/html/__init__.py).
_LXML_META = re.compile(rb'<meta http-equiv="Content-Type"[^>]*>')
_LXML_META_START = b'<meta http-equiv="Content-Type"'
_AMP_FORMS = re.compile(rb"\xef\xb7\x90|&#64976;|&#x[fF][dD][dD]0;|%[eE][fF]%[bB]7%90")


class HtmlParsers:
    """lxml HTML parsers by encoding, reused across responses: building one costs about as much
    as parsing a 100 KiB page. Rewriting is synchronous, so a parser runs one parse at a time."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._parsers: dict[str | None, etree.HTMLParser] = {}

    def get(self, encoding: str | None) -> etree.HTMLParser:
        parser = self._parsers.get(encoding)
        if parser is None:
            # LookupError for an unknown encoding; no ID table, nothing here looks elements up by ID
            parser = etree.HTMLParser(encoding=encoding, collect_ids=False)
            if len(self._parsers) < self._size:
                self._parsers[encoding] = parser
        return parser


class HtmlRewriter:
    name: ClassVar[str] = "html"

    def __init__(self) -> None:
        self._parsers = HtmlParsers()

    def matches(self, meta: ResponseMeta) -> bool:
        return meta.mime_type == "text/html"

    def rewrite_headers(self, headers: CIMultiDict[str], ctx: RewriteContext) -> None:
        return None

    def open_body(self, ctx: RewriteContext) -> BodyRewriter | None:
        return buffered(self.name, ctx, lambda body: rewrite_html_bytes(body, ctx, self._parsers))


def rewrite_html_bytes(
    body: bytes, ctx: RewriteContext, parsers: HtmlParsers | None = None
) -> bytes:
    """A whole page (or an HTML fragment), rewritten; a body without markup comes back as is."""
    if not body.strip():
        return body
    if not _DOCUMENT.search(body[:4096]):
        return _rewrite_fragment(body, ctx)
    encoding = _declared_encoding(body, ctx.meta.charset)
    try:
        root = etree.fromstring(body, (parsers or HtmlParsers()).get(encoding))
    except (etree.ParserError, ValueError, LookupError):
        return body
    if root is None:
        return body
    tree = root.getroottree()
    _rewrite_tree(root, ctx)
    stand_in = _braced_entity(body) and _stand_in_for_ampersands(root)
    had_doctype = _DOCTYPE.search(body[:4096]) is not None
    page = _serialise(tree, had_doctype)
    if stand_in:
        page = _AMP_FORMS.sub(b"&amp;", page)
    return page if had_doctype else page.lstrip(b"\n")


def _serialise(tree: Any, had_doctype: bool) -> bytes:
    """The document, in its own encoding; its DOCTYPE only when the page had one.

    The bytes of ``lxml.html.tostring``, whose one step after ``etree.tostring`` (a regular
    expression over the whole page) is taken only when the page holds what it removes.
    """
    page: bytes = etree.tostring(
        tree,
        method="html",
        doctype=tree.docinfo.doctype if had_doctype else "",  # lxml would invent HTML 4.0's
        encoding=tree.docinfo.encoding or "utf-8",
    )
    if _LXML_META_START in page:
        page = _LXML_META.sub(b"", page)
    return page


def _braced_entity(body: bytes) -> bool:
    """Whether ``body`` may hold an attribute value with "&{" (a quick look for "{" first)."""
    return b"{" in body and _BRACED_ENTITY.search(body) is not None


def _stand_in_for_ampersands(root: Any) -> bool:
    """Write each "&" of an attribute value holding "&{" as ``_AMP``; False when none does, or
    when the page itself holds the stand-in (then it is left as libxml2 writes it)."""
    values = [
        (e, n, v)
        for e in root.iter(etree.Element)
        for n, v in e.items()
        if "&{" in v and not _NOT_XML.search(v)  # lxml would refuse to set it again
    ]
    if not values or any(_AMP in v for e in root.iter(etree.Element) for v in e.values()):
        return False
    for element, name, value in values:
        element.set(name, value.replace("&", _AMP))
    return True


def _declared_encoding(body: bytes, header_charset: str | None) -> str | None:
    """The header's charset; else None when the page declares its own (lxml reads it); else
    UTF-8 when the bytes are UTF-8 (lxml would guess Latin-1 and garble URLs in attributes)."""
    if header_charset:
        return header_charset
    if _META_CHARSET.search(body[:4096]) or body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "utf-8"


def _rewrite_fragment(body: bytes, ctx: RewriteContext) -> bytes:
    """A piece of HTML that is not a document (htmx-style partials): no html/body is added."""
    encoding = ctx.meta.charset or "utf-8"
    try:
        text = body.decode(encoding)
        parts = lxml.html.fragments_fromstring(text)
    except (UnicodeDecodeError, LookupError, etree.ParserError, ValueError):
        return body
    out: list[str] = []
    braced = _braced_entity(body)
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        _rewrite_tree(part, ctx)
        if braced and _stand_in_for_ampersands(part):
            text = lxml.html.tostring(part, encoding="utf-8")
            out.append(_AMP_FORMS.sub(b"&amp;", text).decode("utf-8"))
            continue
        out.append(lxml.html.tostring(part, encoding="unicode"))
    return "".join(out).encode(encoding, "xmlcharrefreplace")


def _rewrite_tree(root: Any, ctx: RewriteContext) -> None:
    """Every URL-bearing attribute under ``root`` (itself included), then the elements whose
    content or other attributes carry URLs: ``<style>``, meta refresh, import maps."""
    public_url = ctx.public_mapper()
    # Most URLs of a page simply gain the prefix: decided here, without a call per URL.
    prefix, prefixable = ctx.urls.prefix, ctx.urls.prefixable()
    styles: dict[str, str] = {}  # pages repeat their inline styles, and tinycss2 is slow
    for element in root.iter(etree.Element):
        for name, value in element.items():  # libxml2's HTML parser lower-cases names
            if name in URL_ATTRIBUTES:
                new = prefix + value[1:] if prefixable(value) else public_url(value)
            elif name in SRCSET_ATTRIBUTES:
                new = rewrite_srcset(value, public_url)
            elif name == "style":
                if value not in styles:
                    styles[value] = rewrite_css(value, public_url)
                new = styles[value]
            else:
                continue
            if new != value:
                # isprintable() is quick, and False for every character _NOT_XML matches
                if not new.isprintable() and _NOT_XML.search(new):
                    if name == "style":
                        continue
                    # percent-encoded, as browsers request them
                    new = _NOT_XML.sub(lambda m: quote(m[0], safe=""), new)
                element.set(name, new)
    for element in root.iter(*_CONTENT_TAGS):
        _rewrite_content(element, ctx)


def _rewrite_content(element: Any, ctx: RewriteContext) -> None:
    tag = element.tag
    if tag == "style" and element.text:
        css = rewrite_css(element.text, ctx.public_url)
        if not _NOT_XML.search(css):  # else the block stays as the page wrote it
            element.text = css
    elif tag == "meta" and element.get("http-equiv", "").lower() == "refresh":
        content = element.get("content")
        if content is not None and not _NOT_XML.search(content):
            element.set("content", rewrite_refresh(content, ctx))
    elif tag == "script" and element.get("type", "").lower() == "importmap" and element.text:
        element.text = _rewrite_import_map(element.text, ctx)


def rewrite_srcset(srcset: str, mapper: Mapper) -> str:
    """Each candidate URL of a srcset through ``mapper``; descriptors and separators kept.

    Follows the HTML parsing rules: a URL is a run of non-space characters (commas included, as
    in data: URLs), trailing commas end a candidate, and descriptors run to the next comma.
    """
    out: list[str] = []
    i, n = 0, len(srcset)
    while i < n:
        start = i
        while i < n and (srcset[i].isspace() or srcset[i] == ","):
            i += 1
        out.append(srcset[start:i])
        start = i
        while i < n and not srcset[i].isspace():
            i += 1
        url = srcset[start:i]
        if not url:
            break
        bare = url.rstrip(",")
        out.append(mapper(bare) + url[len(bare) :])
        if bare != url:
            continue
        start, depth = i, 0
        while i < n and (srcset[i] != "," or depth):
            depth += {"(": 1, ")": -1}.get(srcset[i], 0)
            i += 1
        out.append(srcset[start:i])
    return "".join(out)


def _rewrite_import_map(text: str, ctx: RewriteContext) -> str:
    try:
        document = json.loads(text)
    except ValueError:
        return text
    if not isinstance(document, dict):
        return text
    imports = document.get("imports")
    if isinstance(imports, dict):
        document["imports"] = {k: _mapped(v, ctx) for k, v in imports.items()}
    scopes = document.get("scopes")
    if isinstance(scopes, dict):
        document["scopes"] = {
            ctx.public_url(scope): {k: _mapped(v, ctx) for k, v in table.items()}
            if isinstance(table, dict)
            else table
            for scope, table in scopes.items()
        }
    # "<" as a JSON escape: no "</script>" can appear inside the element.
    return json.dumps(document).replace("<", "\\u003c")


def _mapped(value: Any, ctx: RewriteContext) -> Any:
    return ctx.public_url(value) if isinstance(value, str) else value
