"""UrlMapper and normalize_prefix: prefix validation, routing of request targets, upstream URLs."""

from __future__ import annotations

import pytest
from yarl import URL

from rproxy.errors import ConfigError, PrefixError
from rproxy.urls import BadTarget, Forward, NotOurs, Redirect, Route, UrlMapper, normalize_prefix

UPSTREAM = URL("http://127.0.0.1:8765")
PREFIX = "/user/alice@x/"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("/", "/", id="root"),
        pytest.param("", "/", id="empty-is-root"),
        pytest.param("/user/alice/", "/user/alice/", id="canonical"),
        pytest.param("user/alice", "/user/alice/", id="slashes-added"),
        pytest.param("/user/alice", "/user/alice/", id="trailing-slash-added"),
        pytest.param("/user/alice@example.com/", "/user/alice@example.com/", id="at-sign"),
        pytest.param("/user/caf%C3%A9/", "/user/caf%C3%A9/", id="utf8-escape-kept"),
        pytest.param("/user/a/named-server/", "/user/a/named-server/", id="named-server"),
        pytest.param("/a~b_c.d-e!$+=:/", "/a~b_c.d-e!$+=:/", id="allowed-punctuation"),
        pytest.param("/a%20b/", "/a%20b/", id="escaped-space"),
        pytest.param("/%41/x%7e%2D/", "/A/x~-/", id="escaped-unreserved-written-plainly"),
    ],
)
def test_normalize_prefix_accepts(prefix: str, expected: str) -> None:
    assert normalize_prefix(prefix) == expected


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        pytest.param("//", "empty segment", id="only-double-slash"),
        pytest.param("/a//b/", "empty segment", id="empty-segment"),
        pytest.param("/a/../b/", "dot segment", id="dot-dot"),
        pytest.param("/a/./b/", "dot segment", id="dot"),
        pytest.param("/a/%2e%2e/", "dot segment", id="encoded-dot-dot"),
        pytest.param("/a/%2E./", "dot segment", id="mixed-encoded-dot-dot"),
        pytest.param("/a b/", "' '", id="space"),
        pytest.param('/a"b/', "'\"'", id="double-quote"),
        pytest.param("/a<b/", "'<'", id="less-than"),
        pytest.param("/a>b/", "'>'", id="greater-than"),
        pytest.param("/a'b/", '"\'"', id="single-quote"),
        pytest.param("/a;b/", "';'", id="semicolon"),
        pytest.param("/a,b/", "','", id="comma"),
        pytest.param("/a?b/", "'?'", id="question-mark"),
        pytest.param("/a#b/", "'#'", id="hash"),
        pytest.param("/a\\b/", "'\\\\'", id="backslash"),
        pytest.param("/a(b)/", "'('", id="parenthesis"),
        pytest.param("/a\nb/", "'\\n'", id="raw-newline"),
        pytest.param("/a%2Fb/", "slash", id="encoded-slash"),
        pytest.param("/a%2fb/", "slash", id="encoded-slash-lower"),
        pytest.param("/a%5Cb/", "backslash", id="encoded-backslash"),
        pytest.param("/a%0Ab/", "control", id="encoded-newline"),
        pytest.param("/a%0Db/", "control", id="encoded-carriage-return"),
        pytest.param("/a%00b/", "control", id="encoded-nul"),
        pytest.param("/caf\u00e9/", "'\u00e9'", id="raw-non-ascii"),
        pytest.param("/a%ZZ/", "escape", id="malformed-escape"),
        pytest.param("/a%2/", "escape", id="truncated-escape"),
        pytest.param("/a%/", "escape", id="bare-percent"),
        pytest.param("/a%ff/", "UTF-8", id="invalid-utf8"),
        pytest.param("/a%C3/", "UTF-8", id="truncated-utf8"),
    ],
)
def test_normalize_prefix_refuses(prefix: str, problem: str) -> None:
    with pytest.raises(PrefixError) as info:
        normalize_prefix(prefix)
    message = str(info.value)
    assert repr(prefix) in message
    assert problem in message.replace(repr(prefix), "")


def test_prefix_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        normalize_prefix("/a b/")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("/user/alice@x/", Forward("/", ""), id="prefix-root"),
        pytest.param("/user/alice@x/tree/a.ipynb", Forward("/tree/a.ipynb", ""), id="path"),
        pytest.param("/user/alice@x/lab/", Forward("/lab/", ""), id="trailing-slash-kept"),
        pytest.param(
            "/user/alice@x/api?a=%20b&c=d+e&flag&x=%2F",
            Forward("/api", "a=%20b&c=d+e&flag&x=%2F"),
            id="query-raw",
        ),
        pytest.param("/user/alice@x/api?", Forward("/api", ""), id="empty-query"),
        pytest.param("/user/alice@x/a%2Fb", Forward("/a%2Fb", ""), id="encoded-slash-kept"),
        pytest.param("/user/alice@x/a%40b", Forward("/a%40b", ""), id="encoded-at-kept"),
        pytest.param("/user/alice@x/caf%C3%A9", Forward("/caf%C3%A9", ""), id="non-ascii-kept"),
        pytest.param("/user/alice@x/a#frag", Forward("/a", ""), id="fragment-dropped"),
        pytest.param("/user/alice@x/a?q=1#frag", Forward("/a", "q=1"), id="fragment-after-query"),
        pytest.param("/user/alice@x/a#f?q=1", Forward("/a", ""), id="query-inside-fragment"),
        pytest.param("/user/alice@x//evil/x", Forward("//evil/x", ""), id="double-slash-rest"),
        pytest.param("/user/alice@x/...", Forward("/...", ""), id="three-dots-not-dot-segment"),
        pytest.param("/user/alice@x", Redirect("/user/alice@x/"), id="bare-prefix"),
        pytest.param(
            "/user/alice@x?a=1&b", Redirect("/user/alice@x/?a=1&b"), id="bare-prefix-query"
        ),
        pytest.param("/user/alice%40x", Redirect("/user/alice@x/"), id="encoded-bare-prefix"),
        pytest.param("/user/alice%40x/", Redirect("/user/alice@x/"), id="encoded-prefix-slash"),
        pytest.param(
            "/user/alice%40x/tree/a%2Fb?q=%20#frag",
            Redirect("/user/alice@x/tree/a%2Fb?q=%20"),
            id="encoded-prefix-keeps-rest-and-query",
        ),
        pytest.param("/user/%61lice%40x", Redirect("/user/alice@x/"), id="over-encoded-prefix"),
        pytest.param("/%75ser/alice@x/a", Redirect("/user/alice@x/a"), id="encoded-first-segment"),
        pytest.param("/user/bob/", NotOurs(), id="other-user"),
        pytest.param("/user/alicex/", NotOurs(), id="longer-name"),
        pytest.param("/user/alice/", NotOurs(), id="shorter-name"),
        pytest.param("/user/ALICE@x/", NotOurs(), id="case-differs"),
        pytest.param("/user", NotOurs(), id="parent"),
        pytest.param("/", NotOurs(), id="root"),
        pytest.param("/hub/api", NotOurs(), id="elsewhere"),
        pytest.param("/user/bob/../alice@x/", BadTarget, id="dot-dot-before-prefix"),
        pytest.param("/user/alice@x/../bob/", BadTarget, id="dot-dot"),
        pytest.param("/user/alice@x/%2e%2e/bob", BadTarget, id="encoded-dot-dot"),
        pytest.param("/user/alice@x/%2E%2E", BadTarget, id="encoded-dot-dot-upper"),
        pytest.param("/user/alice@x/./a", BadTarget, id="dot"),
        pytest.param("/user/alice@x/%2e/a", BadTarget, id="encoded-dot"),
        pytest.param("/user/alice@x/a/..", BadTarget, id="trailing-dot-dot"),
        pytest.param("http://evil/x", BadTarget, id="absolute-form"),
        pytest.param("*", BadTarget, id="asterisk-form"),
        pytest.param("evil.example:443", BadTarget, id="authority-form"),
        pytest.param("", BadTarget, id="empty"),
    ],
)
def test_route_under_prefix(target: str, expected: Route | type[BadTarget]) -> None:
    route = UrlMapper(PREFIX, UPSTREAM).route(target)
    if expected is BadTarget:
        assert isinstance(route, BadTarget)
        assert route.reason
    else:
        assert route == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("/", Forward("/", ""), id="root"),
        pytest.param("/a/b?x=1&y=%2F", Forward("/a/b", "x=1&y=%2F"), id="path-and-query"),
        pytest.param("/user/alice@x/", Forward("/user/alice@x/", ""), id="anything-is-ours"),
        pytest.param("/a%2Fb/caf%C3%A9", Forward("/a%2Fb/caf%C3%A9", ""), id="escapes-kept"),
        pytest.param("/a?q#frag", Forward("/a", "q"), id="fragment-dropped"),
        pytest.param("//evil/x", Forward("//evil/x", ""), id="double-slash-stays-path"),
        pytest.param("/@evil/", Forward("/@evil/", ""), id="at-sign-stays-path"),
        pytest.param("/\\evil/x", Forward("/\\evil/x", ""), id="backslash-stays-path"),
        pytest.param("/a/../b", BadTarget, id="dot-dot"),
        pytest.param("/%2e%2e/etc/passwd", BadTarget, id="encoded-dot-dot"),
        pytest.param("/./a", BadTarget, id="dot"),
        pytest.param("http://evil/x", BadTarget, id="absolute-form"),
        pytest.param("*", BadTarget, id="asterisk-form"),
    ],
)
def test_route_at_root(target: str, expected: Route | type[BadTarget]) -> None:
    route = UrlMapper("/", UPSTREAM).route(target)
    if expected is BadTarget:
        assert isinstance(route, BadTarget)
        assert route.reason
    else:
        assert route == expected


def test_mapper_normalizes_and_validates_its_prefix() -> None:
    assert UrlMapper("user/alice@x", UPSTREAM).prefix == PREFIX
    with pytest.raises(PrefixError):
        UrlMapper("/a b/", UPSTREAM)


def test_mapper_keeps_only_the_upstream_origin() -> None:
    mapper = UrlMapper("/", URL("http://127.0.0.1:8765/ignored/path?q=1"))
    assert mapper.upstream == UPSTREAM


@pytest.mark.parametrize(
    ("forward", "raw_path_qs"),
    [
        pytest.param(Forward("//evil/x", ""), "//evil/x", id="double-slash"),
        pytest.param(Forward("/@evil/", "a=1"), "/@evil/?a=1", id="at-sign"),
        pytest.param(Forward("/a%2Fb/caf%C3%A9", "x=%20&y"), "/a%2Fb/caf%C3%A9?x=%20&y", id="raw"),
        pytest.param(Forward("/", ""), "/", id="root"),
    ],
)
@pytest.mark.parametrize("prefix", [pytest.param("/", id="root"), pytest.param(PREFIX, id="user")])
def test_upstream_url_keeps_upstream_host(forward: Forward, raw_path_qs: str, prefix: str) -> None:
    url = UrlMapper(prefix, UPSTREAM).upstream_url(forward)
    assert url.scheme == "http"
    assert url.host == "127.0.0.1"
    assert url.port == UPSTREAM.port
    assert url.raw_path_qs == raw_path_qs
    assert url.user is None
    assert not url.raw_fragment


def test_upstream_url_https_default_port() -> None:
    url = UrlMapper("/", URL("https://app.internal")).upstream_url(Forward("/x", "q=1"))
    assert str(url) == "https://app.internal/x?q=1"
    assert url.port == 443


def test_upstream_url_ipv6_upstream() -> None:
    url = UrlMapper("/", URL("http://[::1]:8765")).upstream_url(Forward("/x", "q=1"))
    assert url.host == "::1"
    assert url.port == 8765
    assert url.raw_path_qs == "/x?q=1"


@pytest.mark.parametrize(
    ("prefix", "public"),
    [
        pytest.param("/", "", id="root"),
        pytest.param("", "", id="empty"),
        pytest.param("/user/alice@x/", "/user/alice@x", id="user"),
        pytest.param("user/a/named-server", "/user/a/named-server", id="normalized"),
    ],
)
def test_public_prefix(prefix: str, public: str) -> None:
    assert UrlMapper(prefix, UPSTREAM).public_prefix == public
