"""Fuzzing the URL policy (rproxy/urls.py) with structured hostile URLs and generated prefixes.

What is proven, for every prefix the validator accepts and every URL built from slashes,
backslashes, ``@``, encoded slashes and dots, tabs, newlines, controls, schemes and non-ASCII:

- the validator only accepts prefixes that cannot leave a URL, an attribute, a CSS token or a
  header, whatever text it is given;
- ``to_public``: a URL that a browser resolves to the upstream's origin (or the public host) is
  still same-origin after rewriting, as the browser resolves it against the public page; a URL
  the policy changes was same-origin to begin with, stays under the prefix, and names the path
  the upstream meant (already-prefixed paths are not prefixed twice); applying the policy again
  changes nothing; ``public_mapper`` gives what ``to_public`` gives, and every URL that
  ``prefixable`` accepts (the html rewriter's fast path) is mapped by ``to_public`` to the prefix
  followed by the URL without its slash, for every public host;
- ``route``: a forwarded request keeps the upstream's host and only the path under the prefix,
  never with a dot segment.

The browser is modelled by ``fuzz_parts.resolve`` (WHATWG rules, not urllib's).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from fuzz_parts import (
    FUZZ,
    PUBLIC_HOST,
    UPSTREAM,
    Resolved,
    comparable_path,
    has_dot_segment_in_path,
    hostile_urls,
    prefixes,
    resolve,
    with_prefix_urls,
)
from hypothesis import example, given
from hypothesis import strategies as st
from yarl import URL

from rproxy.errors import PrefixError
from rproxy.urls import Forward, UrlMapper, normalize_prefix

UPSTREAM_ORIGIN = ("http", "127.0.0.1", 8888)
_SAFE_PREFIX = re.compile(r"/(?:(?:[A-Za-z0-9\-._~@!$+=:]|%[0-9A-Fa-f]{2})+/)*")

_C0_AND_SPACE = "".join(map(chr, range(0x21)))
base_paths = st.sampled_from(["", "page", "dir/page", "a/b/c/", "x/"])


def _ours(resolved: Resolved, public_host: str | None) -> bool:
    """Whether the mapper may treat this target as the upstream's (or the public host's)."""
    origin = resolved.origin
    if len(origin) != 3 or origin[0] not in ("http", "https"):
        return False
    return (origin[1], origin[2]) == ("127.0.0.1", 8888) or origin[1] == public_host


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["/", "//", "\\", "%2f", "%5C", "%2e", "%2e%2e", "..", ".", "%"]),
            st.sampled_from(["%00", "%0a", "%C3%A9", "%e9", "%41", '"', "'", "<", ">", "&", " "]),
            st.text(max_size=3),
        ),
        max_size=8,
    ).map("".join)
)
@example("/a%2F/")
@example("/%2e%2E/")
@example("/a/%0D/")
def test_the_prefix_validator_lets_only_safe_prefixes_through(text: str) -> None:
    try:
        prefix = normalize_prefix(text)
    except PrefixError:
        return
    assert _SAFE_PREFIX.fullmatch(prefix), prefix
    for segment in prefix.strip("/").split("/") if prefix != "/" else []:
        decoded = unquote(segment, errors="strict")
        assert decoded not in (".", ".."), prefix
        assert not any(c in "/\\" or ord(c) < 0x20 or c == "\x7f" for c in decoded), prefix


def _scheme_quirk(url: str) -> bool:
    """``http:/x`` or ``http:x``: relative on an http page, another host on an https page. The
    policy leaves these alone, so they change meaning when the public side is https (README)."""
    text = re.sub("[\t\n\r]", "", url.strip(_C0_AND_SPACE))
    return re.match(r"(?i)https?:(?![/\\]{2})", text) is not None


@FUZZ
@given(
    pair=with_prefix_urls(),
    base=base_paths,
    host=st.sampled_from([PUBLIC_HOST, None]),
    public_scheme=st.sampled_from(["http", "https"]),
)
@example(("/user/alice/", "http://127.0.0.1:8888//evil.example/x"), "", None, "https")
@example(("/", "http://127.0.0.1:8888//evil.example/x"), "", None, "http")
@example(("/", "//127.0.0.1:8888/\t/evil.example"), "", None, "https")
@example(("/p/", "https://hub.example/\\/evil.example"), "", PUBLIC_HOST, "https")
@example(("/", "//[::1]:8888@"), "", PUBLIC_HOST, "https")
@example(("/", "http://[::1]@/x"), "", None, "http")
@example(("/", "//hub.example\u3000"), "", PUBLIC_HOST, "http")  # an invalid host: rewritten or not
@example(("/%41/", "//127.0.0.1:8888/%41/"), "", PUBLIC_HOST, "http")  # %41 is A, in the prefix too
def test_same_origin_never_becomes_cross_origin_nor_leaves_the_prefix(
    pair: tuple[str, str], base: str, host: str | None, public_scheme: str
) -> None:
    prefix, url = pair
    mapper = UrlMapper(prefix, UPSTREAM)
    public = mapper.to_public(url, host)
    public_origin = (public_scheme, PUBLIC_HOST, 443 if public_scheme == "https" else 80)
    source = resolve(url, UPSTREAM_ORIGIN, "/" + base)
    seen = resolve(public, public_origin, prefix + base)
    if _ours(source, host) and public == url and not _scheme_quirk(url):
        # left alone: an absolute URL still names its host (a scheme-relative one takes the
        # public page's scheme); anything else lands on the public origin
        assert seen.origin == public_origin or seen.origin[1:] == source.origin[1:], seen
    if public == url:
        return
    assert seen.origin == public_origin, (public, seen)
    # A changed URL was the upstream's; or the browser would not have loaded it at all; or a tab
    # or newline hid "//" from the policy, and the link now stays on the public origin.
    assert _ours(source, host) or source.origin == ("invalid",) or re.search("[\t\n\r]", url), (
        f"{url!r} pointed elsewhere ({source}) but became {public!r}"
    )
    if not _ours(source, host) or has_dot_segment_in_path(url):
        return  # "/../x" is prefixed as written (README: known limitation)
    decoded_prefix = comparable_path(prefix)
    bare = decoded_prefix.rstrip("/")
    got = comparable_path(seen.path)
    assert got.startswith(decoded_prefix) or got == bare, f"{public!r} leaves {prefix!r}"
    if re.search("[\t\n\r]", url) or url.strip() != url.strip(_C0_AND_SPACE):
        return  # the browser drops them, the policy keeps them: the path may differ, not the origin
    expected = comparable_path(source.path)
    if not (expected.startswith(decoded_prefix) or expected == bare):
        expected = decoded_prefix + expected[1:]
    assert got == expected, f"{url!r} -> {public!r}: the browser asks for {got!r}"


@FUZZ
@given(pair=with_prefix_urls(), host=st.sampled_from([PUBLIC_HOST, None]))
def test_the_policy_is_idempotent_and_public_mapper_agrees(
    pair: tuple[str, str], host: str | None
) -> None:
    prefix, url = pair
    mapper = UrlMapper(prefix, UPSTREAM)
    public = mapper.to_public(url, host)
    assert mapper.public_mapper(host)(url) == public
    assert mapper.to_public(public, host) == public, "applying the policy twice adds nothing"


@FUZZ
@given(
    pair=with_prefix_urls(),
    lead=st.sampled_from(["", "/", "/" * 2]),
    host=st.sampled_from([PUBLIC_HOST, None, "127.0.0.1:8888"]),
)
def test_prefixable_urls_are_exactly_the_prefix_plus_the_url(
    pair: tuple[str, str], lead: str, host: str | None
) -> None:
    prefix, url = pair
    mapper = UrlMapper(prefix, UPSTREAM)
    prefixable = mapper.prefixable()
    for each in (url, lead + url, lead + url.lstrip("/\\ ")):
        if prefixable(each):
            assert mapper.to_public(each, host) == mapper.prefix + each[1:], each


@FUZZ
@given(prefix=prefixes, data=st.data())
def test_a_forwarded_request_keeps_the_upstream_host_and_stays_under_the_prefix(
    prefix: str, data: st.DataObject
) -> None:
    target = data.draw(
        st.one_of(
            hostile_urls(prefix).map(lambda url: prefix + url),
            hostile_urls(prefix).map(lambda url: url if url.startswith("/") else "/" + url),
        ),
        label="target",
    )
    route = UrlMapper(prefix, UPSTREAM).route(target)
    if not isinstance(route, Forward):
        return
    path = target.partition("#")[0].partition("?")[0]
    assert path.startswith(prefix)
    assert route.path == "/" + path[len(prefix) :]
    assert not any(unquote(segment) in (".", "..") for segment in route.path.split("/"))
    upstream = UrlMapper(prefix, UPSTREAM).upstream_url(route)
    assert upstream.raw_authority == UPSTREAM.raw_authority
    assert URL(str(upstream)).raw_authority == UPSTREAM.raw_authority
