"""Shared parts of the fuzz tests: the selected Hypothesis profile, a browser's URL resolution,
and structured strategies for prefixes and hostile URLs.

``resolve`` is a small model of the WHATWG URL parser for the one case that matters here: a URL
found in a page (or a header) whose base is an http(s) URL. It does what browsers do and urllib
does not: strips leading and trailing C0 controls and spaces, removes every tab and newline, reads
a backslash as a slash before the query, skips any number of slashes after ``//``, reads
``http:x`` as relative but ``https:x`` (another special scheme) as an authority, and treats
``%2e`` as a dot in dot segments. Of IDNA it knows only that hosts are mapped much as NFKC maps
them (U+3000 becomes a space, which no host may hold); it knows no IPv4 number forms: hosts
compare as lower-cased, percent-decoded, NFKC-normalised text, which is enough to tell the
upstream from anything else.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from hypothesis import settings
from hypothesis import strategies as st
from yarl import URL

from rproxy.errors import PrefixError
from rproxy.urls import normalize_prefix

FUZZ = settings.get_profile(f"rproxy-fuzz-{os.environ.get('RPROXY_FUZZ', 'ci')}")

UPSTREAM = URL("http://127.0.0.1:8888")
UPSTREAM_AUTHORITY = "127.0.0.1:8888"
PUBLIC_HOST = "hub.example"

_SPECIAL = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_CONTROLS_AND_SPACE = "".join(map(chr, range(0x21)))


@dataclass(frozen=True)
class Resolved:
    """Where a browser goes: ``origin`` is (scheme, host, port), or ("opaque", scheme) for
    ``javascript:``, ``data:`` and the like, or ("invalid",) when the browser refuses the URL."""

    origin: tuple[object, ...]
    path: str = ""


def resolve(url: str, base_origin: tuple[str, str, int], base_path: str) -> Resolved:
    """``url`` resolved against ``base_origin`` + ``base_path`` the way a browser does."""
    text = re.sub("[\t\n\r]", "", url.strip(_CONTROLS_AND_SPACE))
    base_scheme = base_origin[0]
    scheme_match = _SCHEME.match(text)
    if scheme_match:
        scheme = scheme_match[0][:-1].lower()
        rest = text[scheme_match.end() :]
        if scheme not in _SPECIAL:
            return Resolved(("opaque", scheme))
        if scheme != base_scheme:
            return _authority(scheme, rest.lstrip("/\\"))
        text = rest  # same special scheme: relative unless two slashes follow
    if text[:2] in ("//", "/\\", "\\/", "\\\\"):
        return _authority(base_scheme, text.lstrip("/\\"))
    path, _tail = _split_tail(text)
    if path[:1] in ("/", "\\"):
        return Resolved(base_origin, _remove_dots(path))
    if not path:
        return Resolved(base_origin, base_path)
    directory = base_path.rsplit("/", 1)[0] + "/"
    return Resolved(base_origin, _remove_dots(directory + path))


def _split_tail(text: str) -> tuple[str, str]:
    cut = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=len(text))
    return text[:cut], text[cut:]


def _authority(scheme: str, text: str) -> Resolved:
    end = min((i for i in map(text.find, "/\\?#") if i >= 0), default=len(text))
    authority, rest = text[:end], text[end:]
    host_port = authority.rpartition("@")[2]
    host, colon, port = host_port.rpartition(":") if "]" not in host_port[-1:] else ("", "", "")
    if not colon or "]" in port:
        host, port = host_port, ""
    if port and not port.isdigit():
        return Resolved(("invalid",))
    host = unicodedata.normalize("NFKC", unquote(host)).lower()  # UTS 46 maps much as NFKC does
    if not host or any(c in host for c in " #%/:<>?@[\\]^|"):
        return Resolved(("invalid",))
    number = int(port) if port else _SPECIAL[scheme]
    path, _ = _split_tail(rest)
    return Resolved((scheme, host, number), _remove_dots(path or "/"))


def _remove_dots(path: str) -> str:
    out: list[str] = []
    segments = path.replace("\\", "/").split("/")[1:]
    for i, segment in enumerate(segments):
        dotted = segment.lower().replace("%2e", ".")
        last = i == len(segments) - 1
        if dotted == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif dotted == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def comparable_path(path: str) -> str:
    """A path as the server receives it, with percent-escapes and backslashes normalised."""
    return unquote(path).replace("\\", "/")


def has_dot_segment_in_path(url: str, *, backslash: bool = True) -> bool:
    """Whether the path part of ``url`` has a "." or ".." segment (``%2e`` counts as a dot);
    ``backslash``: split on backslashes too, as browsers do for http(s) URLs."""
    text = re.sub("[\t\n\r]", "", url.strip(_CONTROLS_AND_SPACE))
    path, _ = _split_tail(text)
    if backslash:
        path = path.replace("\\", "/")
    return any(unquote(segment) in (".", "..") for segment in path.split("/"))


# -- strategies ----------------------------------------------------------------------------

_SEGMENT_CHARS = "ABCXYZabcxyz0189-._~@!$+=:"
_ESCAPES = ["%41", "%7E", "%C3%A9", "%2e", "%2E", "%2F", "%5c", "%00", "%0A", "%FF", "%25", "%"]
_segment = st.lists(
    st.one_of(st.sampled_from(_SEGMENT_CHARS), st.sampled_from(_ESCAPES)), min_size=1, max_size=6
).map("".join)


def _valid(prefix: str) -> bool:
    try:
        normalize_prefix(prefix)
    except PrefixError:
        return False
    return True


#: Prefixes the config validator accepts, in their normal form ("/a/b/").
prefixes = st.one_of(
    st.just("/"),
    st.lists(_segment, min_size=1, max_size=3)
    .map(lambda parts: "/" + "/".join(parts) + "/")
    .filter(_valid)
    .map(normalize_prefix),
)

_LEADS = ["", "", " ", "\t", "\n", "\x00", "\x0c", " \t\n"]
_HEADS = [
    "",
    "/",
    "/",
    "//",
    "///",
    "/\\",
    "\\/",
    "\\\\",
    "\\",
    "http:",
    "https:",
    "HTTP:",
    "http:/",
    "http://",
    "http://",
    "https://",
    "HtTpS://",
    "http:\\\\",
    "https:/\\",
    "ws://",
    "ftp://",
    "javascript:",
    "JaVaScRiPt:",
    "java\tscript:",
    "data:text/html,",
    "mailto:",
    "h\tttp://",
    "/\t/",
    "/\n/",
    "?",
    "#",
    "./",
    "../",
]
_AUTHORITIES = [
    "",
    UPSTREAM_AUTHORITY,
    UPSTREAM_AUTHORITY,
    PUBLIC_HOST,
    "HUB.Example",
    "evil.example",
    "127.0.0.1",
    "127.0.0.1:8889",
    "user@" + UPSTREAM_AUTHORITY,
    "evil.example@" + UPSTREAM_AUTHORITY,
    UPSTREAM_AUTHORITY + "@evil.example",
    UPSTREAM_AUTHORITY + "\\@evil.example",
    "evil.example\\@" + UPSTREAM_AUTHORITY,
    UPSTREAM_AUTHORITY + ".evil.example",
    PUBLIC_HOST + ":443",
    "hub%2Eexample",
    "[::1]:8888",
]
_PIECES = [
    "/",
    "/",
    "\\",
    "//",
    "/\\",
    "..",
    ".",
    "%2e%2e",
    "%2E.",
    ".%2e",
    "%2e",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "@",
    ":",
    "a",
    "b.css",
    "evil.example",
    "\t",
    "\n",
    "\r",
    "\x00",
    "\x1f",
    " ",
    "é",
    "\u3000",
    "\ufeff",
    "\u2028",
    "?",
    "#",
    "%",
    "%zz",
    "'",
    '"',
    "<",
    ">",
    "&",
    ";",
    ",",
    "(",
    ")",
    "javascript:",
]
_TRAILS = ["", "", " ", "\t", "\n", "\x00"]


@st.composite
def hostile_urls(draw: st.DrawFn, prefix: str = "/") -> str:
    """URL-ish strings built from the parts that confuse parsers, sometimes with ``prefix``."""
    lead = draw(st.sampled_from(_LEADS))
    head = draw(st.sampled_from(_HEADS))
    authority = draw(st.sampled_from(_AUTHORITIES)) if head.endswith(("/", "\\", ":")) else ""
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(_PIECES),
                st.sampled_from([prefix, prefix[1:], prefix[:-1], prefix[1:-1]]),
                st.text(max_size=3),
            ),
            max_size=8,
        )
    )
    return lead + head + authority + "".join(pieces) + draw(st.sampled_from(_TRAILS))


def with_prefix_urls() -> st.SearchStrategy[tuple[str, str]]:
    """(prefix, url) pairs: a valid prefix and a hostile URL that may contain it."""
    return prefixes.flatmap(lambda prefix: st.tuples(st.just(prefix), hostile_urls(prefix)))
