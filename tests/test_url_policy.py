"""UrlMapper.to_public: the URL policy for URLs found in responses, by table and by property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from rproxy.urls import UrlMapper

UPSTREAM = URL("http://127.0.0.1:8888")
MAPPER = UrlMapper("/user/alice/", UPSTREAM)


@pytest.mark.parametrize(
    ("url", "public"),
    [
        pytest.param("/static/a.js", "/user/alice/static/a.js", id="root-relative"),
        pytest.param("/", "/user/alice/", id="root"),
        pytest.param("/a?b=/c#d", "/user/alice/a?b=/c#d", id="query-fragment"),
        pytest.param("/user/alice/x", "/user/alice/x", id="already-prefixed"),
        pytest.param("/user/alice", "/user/alice", id="bare-prefix"),
        pytest.param("/user/alicex", "/user/alice/user/alicex", id="prefix-lookalike"),
        pytest.param("x/y", "x/y", id="relative"),
        pytest.param("../y", "../y", id="parent-relative"),
        pytest.param("#top", "#top", id="fragment"),
        pytest.param("?q=1", "?q=1", id="query-only"),
        pytest.param("data:text/plain,/x", "data:text/plain,/x", id="data"),
        pytest.param("javascript:go('/x')", "javascript:go('/x')", id="javascript"),
        pytest.param("mailto:a@b.example", "mailto:a@b.example", id="mailto"),
        pytest.param("https://other.example/x", "https://other.example/x", id="other-origin"),
        pytest.param("//other.example/x", "//other.example/x", id="scheme-relative"),
        pytest.param("/\\other.example/x", "/\\other.example/x", id="backslash-scheme-relative"),
        pytest.param("http://127.0.0.1:8888/x", "/user/alice/x", id="upstream-absolute"),
        pytest.param("HTTP://127.0.0.1:8888/x", "/user/alice/x", id="upstream-absolute-caps"),
        pytest.param("//127.0.0.1:8888/x", "/user/alice/x", id="upstream-scheme-relative"),
        pytest.param("http://127.0.0.1:8888", "/user/alice/", id="upstream-origin-only"),
        pytest.param("http://127.0.0.1:8889/x", "http://127.0.0.1:8889/x", id="other-port"),
        pytest.param("http://u@127.0.0.1:8888/x", "http://u@127.0.0.1:8888/x", id="userinfo"),
        pytest.param("https://hub.example/x", "/user/alice/x", id="public-host"),
        pytest.param(
            "/%2F%2Fother.example", "/user/alice/%2F%2Fother.example", id="encoded-slashes"
        ),
    ],
)
def test_url_policy(url: str, public: str) -> None:
    assert MAPPER.to_public(url, "hub.example") == public


def test_root_prefix_leaves_paths_alone_but_maps_the_upstream_origin() -> None:
    root = UrlMapper("/", UPSTREAM)
    assert root.to_public("/static/a.js") == "/static/a.js"
    assert root.to_public("http://127.0.0.1:8888/a") == "/a"


def _cross_origin(url: str) -> bool:
    text = url.strip().replace("\\", "/")
    if text.startswith("//"):
        return True
    head = text.split("/", 1)[0]
    return ":" in head and not text.startswith("/")


_segment = st.from_regex(r"[A-Za-z0-9._~@!$+=:-]{1,8}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
_prefixes = st.lists(_segment, min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts) + "/"
)
_urls = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="/\\.:%2Fa@?#e ", max_size=20),
    st.builds(
        lambda a, b: a + b,
        st.sampled_from(["/", "//", "/\\", "http://", "\\\\"]),
        st.text(max_size=20),
    ),
)


@given(prefix=_prefixes, url=_urls)
def test_same_origin_never_becomes_cross_origin_nor_double_prefixed(prefix: str, url: str) -> None:
    mapper = UrlMapper(prefix, UPSTREAM)
    public = mapper.to_public(url, "hub.example")
    if not _cross_origin(url):
        assert not _cross_origin(public)
    if public != url:
        assert public.startswith(prefix)
        assert not public.startswith(prefix + prefix[1:]) or url.strip().startswith(
            prefix[:-1] + prefix
        )
    assert mapper.to_public(public, "hub.example") == public, (
        "applying the policy twice adds nothing"
    )


@given(
    prefix=st.one_of(st.just("/"), _prefixes),
    url=_urls,
    suffix=st.text(alphabet="/\\ ?#x", max_size=4),
    host=st.sampled_from([None, "hub.example"]),
)
def test_public_mapper_agrees_with_to_public(
    prefix: str, url: str, suffix: str, host: str | None
) -> None:
    mapper = UrlMapper(prefix, UPSTREAM)
    mapped = mapper.public_mapper(host)
    for each in (url, "/" + url, prefix[:-1] + suffix, "/" + url + suffix):
        assert mapped(each) == mapper.to_public(each, host)


_root_relative = st.builds(
    lambda prefix_part, rest, tail: "/" + prefix_part + rest + tail,
    st.sampled_from(["", "user/alice", "user/alice/", "user/alic", "user/alicex", "/", "\\"]),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\t", "\n", "\u3000", "\x0c", "?", "#", "/"]),
)


@given(
    prefix=st.one_of(st.just("/user/alice/"), st.just("/"), _prefixes),
    url=st.one_of(_urls, _root_relative),
    host=st.sampled_from([None, "hub.example", "127.0.0.1:8888"]),
)
def test_prefixable_urls_gain_exactly_the_prefix(prefix: str, url: str, host: str | None) -> None:
    """The html rewriter maps what ``prefixable`` accepts to ``prefix + url[1:]`` itself."""
    mapper = UrlMapper(prefix, UPSTREAM)
    prefixable = mapper.prefixable()
    for each in (url, "/" + url, prefix[:-1] + url, prefix + url):
        if prefixable(each):
            assert mapper.to_public(each, host) == mapper.prefix + each[1:]


def test_prefixable_takes_the_common_links_and_at_the_root_they_stay_as_they_are() -> None:
    root = UrlMapper("/", UPSTREAM)
    for url in ("/docs/s01/page-0001.html", "/x", "/a?b=/c#d"):
        assert root.prefixable()(url), url
        assert root.to_public(url) == url
    for url in ("//x", "/\\x", "/x ", "x", "", "#a"):
        assert not root.prefixable()(url), url
    prefixable = MAPPER.prefixable()
    for url in ("/docs/s01/page-0001.html", "/x", "/a?b=/c#d", "/user/x"):
        assert prefixable(url), url
    for url in ("/user/alice/x", "/user/alice", "//x", "/\\x", "/x ", "x", "", "#a"):
        assert not prefixable(url), url
