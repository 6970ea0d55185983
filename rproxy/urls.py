"""UrlMapper: the one object that knows the public URL prefix and the upstream origin.

It validates the prefix once, at start-up, and decides for every request target whether it is
forwarded (and to which upstream path), redirected to the canonical prefix, refused, or not ours.
Upstream URLs are built from parsed parts, never by string concatenation, so no request path
(``//evil/x``, ``/@evil/``) can change the host the proxy connects to.

Paths and queries travel raw: what the client sent (``%2F``, ``%40``, non-ASCII escapes) is what the
upstream receives, minus the prefix and minus any fragment. This module does not rewrite URLs inside
responses; rewriters ask it how to map a URL once they exist.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from yarl import URL

from rproxy.errors import PrefixError

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SEGMENT = re.compile(r"(?:[A-Za-z0-9\-._~@!$+=:]|%[0-9A-Fa-f]{2})+")


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request upstream with this raw path (starting with ``/``) and raw query."""

    path: str
    query: str


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer with a redirect to this same-origin location."""

    location: str


@dataclass(frozen=True, slots=True)
class NotOurs:
    """The target lies outside the prefix: 404."""


@dataclass(frozen=True, slots=True)
class BadTarget:
    """The target is malformed or unsafe: 400 with this fixed reason."""

    reason: str


Route = Forward | Redirect | NotOurs | BadTarget


def normalize_prefix(prefix: str) -> str:
    """Return ``prefix`` with one leading and one trailing slash, or raise PrefixError.

    Allowed segment characters are the unreserved ones, ``@!$+=:`` and percent escapes; an escape
    may not hide a slash, a backslash, a control character or a dot segment. Anything else could
    break out of a URL, an HTML attribute, a CSS token or a header, so it is refused here. An
    escaped unreserved character is written plainly (``%41`` is ``A``, RFC 3986 6.2.2.2), as
    browsers and yarl write it, so the prefix in rewritten URLs is the one requests arrive under.
    """
    normalized = prefix if prefix.startswith("/") else "/" + prefix
    normalized = normalized if normalized.endswith("/") else normalized + "/"
    if normalized == "/":
        return "/"
    segments = normalized[1:-1].split("/")
    for segment in segments:
        problem = _segment_problem(segment)
        if problem:
            raise PrefixError(f"URL prefix {prefix!r} is not allowed: {problem}")
    return "/" + "/".join(_ESCAPE.sub(_unreserved_plain, s) for s in segments) + "/"


def _unreserved_plain(escape: re.Match[str]) -> str:
    char = chr(int(escape[0][1:], 16))
    return char if char in _UNRESERVED else escape[0]


def _segment_problem(segment: str) -> str | None:
    if not segment:
        return "it contains an empty segment ('//')"
    if not _SEGMENT.fullmatch(segment):
        bad = [c for c in segment if c != "%" and not _SEGMENT.fullmatch(c)]
        if bad:
            return f"character {bad[0]!r} is not allowed (percent-encode it)"
        return "it contains a malformed percent escape"
    try:
        decoded = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return "a percent escape is not valid UTF-8"
    if decoded in (".", ".."):
        return "it contains a dot segment"
    if any(c in "/\\" or unicodedata.category(c).startswith("C") for c in decoded):
        return "a percent escape hides a slash, backslash or control character"
    return None


def has_dot_segment(path: str) -> bool:
    """Whether a segment of ``path`` is "." or "..", percent-encoded or not."""
    return any(unquote(segment) in (".", "..") for segment in path.split("/"))


class UrlMapper:
    """Maps request targets under ``prefix`` to upstream URLs on ``upstream`` (an origin URL)."""

    def __init__(self, prefix: str, upstream: URL) -> None:
        self.prefix = normalize_prefix(prefix)
        self.upstream = upstream.origin()
        self._segments = self.prefix.strip("/").split("/") if self.prefix != "/" else []
        self._bare_prefix = self.prefix.rstrip("/")
        self._decoded = [unquote(s) for s in self._segments]
        # What to_public sends to _root_relative and gives the prefix: one slash, not two, not
        # the bare prefix, no trailing whitespace (at the root prefix: comes back unchanged).
        outside = f"|{re.escape(self._bare_prefix[1:])}" if self.prefix != "/" else ""
        self._unprefixed = re.compile(rf"/(?![/\\]{outside}).*\S\Z", re.DOTALL).match

    def route(self, target: str) -> Route:
        """Decide what to do with a raw request target (path, query and maybe a fragment)."""
        if "#" in target:
            target = target.partition("#")[0]
        path, _, query = target.partition("?")
        if not path.startswith("/"):
            return BadTarget("the request target must be a path")
        if ("/." in path or "%2" in path) and has_dot_segment(path):
            return BadTarget("the request path contains a dot segment")
        if path.startswith(self.prefix):  # the common case, decided without splitting
            return Forward(path[len(self.prefix) - 1 :], query)
        segments = path.split("/")[1:]
        n = len(self._segments)
        head, rest = segments[:n], segments[n:]
        if head == self._segments:
            return self._redirect("/".join(rest), query)
        if len(head) == n and [unquote(s) for s in head] == self._decoded:
            return self._redirect("/".join(rest), query)
        return NotOurs()

    def _redirect(self, rest: str, query: str) -> Redirect:
        location = self.prefix + rest
        return Redirect(f"{location}?{query}" if query else location)

    def upstream_url(self, forward: Forward) -> URL:
        """The absolute upstream URL for ``forward``; its host is always the upstream's."""
        return URL.build(
            scheme=self.upstream.scheme,
            authority=self.upstream.raw_authority,
            path=forward.path,
            query_string=forward.query,
            encoded=True,
        )

    def to_public(self, url: str, public_host: str | None = None) -> str:
        """A URL found in an upstream response, as the client must see it.

        Root-relative URLs gain the prefix, unless they already carry it; absolute and
        scheme-relative URLs to the upstream's origin (or to ``public_host``, the Host the client
        used) become prefixed paths. Everything else comes back unchanged: relative URLs,
        fragments, ``data:``, ``javascript:``, ``mailto:``, other origins. No result is ever
        cross-origin unless its input was.
        """
        if url[:1] == "/" and url[1:2] not in ("/", "\\") and not url[-1].isspace():
            return self._root_relative(url)  # the common case, without stripping
        text = url.strip()
        if text[:2] in ("//", "/\\", "\\/", "\\\\"):  # scheme-relative, as browsers read it
            return self._same_origin_path(url, "http:" + text.replace("\\", "/"), public_host)
        if text.startswith("/"):
            return url if self._root_relative(text) == text else self.prefix + text[1:]
        if text[:8].lower().startswith(("http://", "https://")):
            return self._same_origin_path(url, text, public_host)
        return url

    def public_mapper(self, public_host: str | None = None) -> Callable[[str], str]:
        """``to_public`` with ``public_host`` bound, for the many URLs of one response.

        A root-relative URL outside the prefix (most links in a page) is recognised by one
        regular expression and gains the prefix directly; any other URL goes to ``to_public``.
        Both paths give the same result for every string.
        """
        prefix, fast, to_public = self.prefix, self.prefixable(), self.to_public

        def mapped(url: str) -> str:
            if fast(url):
                return prefix + url[1:]
            return to_public(url, public_host)

        return mapped

    def prefixable(self) -> Callable[[str], object]:
        """A test for the URLs that ``to_public`` maps to ``prefix + url[1:]`` whatever the
        public host: root-relative, outside the prefix, no trailing whitespace (most links in a
        page; at the root prefix they come back unchanged). A URL it refuses may still gain the
        prefix."""
        return self._unprefixed

    def _root_relative(self, path: str) -> str:
        """``path`` (starting with one slash) under the prefix, unless it is there already."""
        if self.prefix == "/" or path.startswith(self.prefix):
            return path
        if (
            path.startswith(self._bare_prefix)
            and path.split("?", 1)[0].split("#", 1)[0] == self._bare_prefix
        ):
            return path
        return self.prefix + path[1:]

    def _same_origin_path(self, original: str, absolute: str, public_host: str | None) -> str:
        try:
            parsed = URL(absolute)
            authority = parsed.raw_authority.lower()
        except (ValueError, IndexError):  # yarl raises IndexError for "http://[::1]@"
            return original
        ours = authority == self.upstream.raw_authority.lower() or (
            public_host is not None and authority == public_host.lower()
        )
        if not ours or parsed.user is not None:
            return original
        rest = parsed.raw_path_qs + (f"#{parsed.raw_fragment}" if parsed.raw_fragment else "")
        rest = rest if rest.startswith("/") else "/" + rest
        if rest[1:2] in ("/", "\\"):  # an empty first segment: as "//x" it would name a host
            return self.prefix + rest[1:] if self.prefix != "/" else "/." + rest
        return self.to_public(rest)

    @property
    def public_prefix(self) -> str:
        """The prefix without its trailing slash, as X-Forwarded-Prefix carries it; "" at root."""
        return self.prefix.rstrip("/")
