"""Header policy: hop-by-hop removal both ways, X-Forwarded-* trust, Host policy."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from multidict import CIMultiDict

from rproxy.config import HostHeader, TrustedProxies
from rproxy.forwarding import (
    OWN_COOKIES,
    ClientView,
    client_response_headers,
    hop_by_hop,
    upstream_request_headers,
    user_info,
    with_user_query,
    without_cookies,
)

PEER = "203.0.113.7"
CLIENT = ClientView(peer=PEER, scheme="http", host="proxy.example")
UPSTREAM_HOST = "127.0.0.1:8765"

HOP_BY_HOP = [
    ("Connection", "keep-alive, X-Hop"),
    ("X-Hop", "listed in Connection"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Transfer-Encoding", "chunked"),
    ("Upgrade", "h2c"),
    ("Proxy-Authorization", "Basic c2VjcmV0"),
    ("Proxy-Connection", "keep-alive"),
    ("Proxy-Authenticate", 'Basic realm="x"'),
]

UNTRUSTED_FORWARDING = [
    ("X-Forwarded-For", "1.2.3.4, 5.6.7.8"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/evil"),
    ("X-Forwarded-Context", "/evil"),
    ("X-ProxyContextPath", "/evil"),
    ("Forwarded", "for=1.2.3.4;proto=https;host=evil.example"),
    ("X-Real-IP", "1.2.3.4"),
]


def _request(
    incoming: CIMultiDict[str],
    *,
    client: ClientView = CLIENT,
    public_prefix: str = "/user/alice",
    trusted: TrustedProxies | None = None,
    host_header: HostHeader = "preserve",
) -> CIMultiDict[str]:
    return upstream_request_headers(
        incoming,
        client,
        public_prefix=public_prefix,
        trusted=trusted or TrustedProxies(),
        host_header=host_header,
        upstream_host=UPSTREAM_HOST,
    )


def _headers(*pairs: tuple[str, str], host: str | None = "proxy.example") -> CIMultiDict[str]:
    headers = CIMultiDict[str]()
    if host is not None:
        headers.add("Host", host)
    for name, value in pairs:
        headers.add(name, value)
    return headers


def _networks(*texts: str) -> TrustedProxies:
    return TrustedProxies(networks=tuple(ipaddress.ip_network(t) for t in texts))


def test_hop_by_hop_includes_fixed_names_and_connection_list() -> None:
    names = hop_by_hop(CIMultiDict([("Connection", "Keep-Alive, X-Custom ,, x-other")]))
    assert {"x-custom", "x-other", "keep-alive"} <= names
    assert {
        "connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
    } <= names
    assert "" not in names
    assert all(name == name.lower() for name in names)


def test_hop_by_hop_reads_every_connection_header() -> None:
    names = hop_by_hop(CIMultiDict([("Connection", "X-One"), ("connection", "X-Two")]))
    assert {"x-one", "x-two"} <= names


def test_hop_by_hop_without_connection() -> None:
    names = hop_by_hop(CIMultiDict([("Cookie", "a=1")]))
    assert "cookie" not in names
    assert "connection" in names


def test_request_drops_hop_by_hop_and_expect() -> None:
    incoming = _headers(*HOP_BY_HOP, ("Expect", "100-continue"), ("Accept", "*/*"))
    out = _request(incoming)
    for name, _ in [*HOP_BY_HOP, ("Expect", "")]:
        assert name not in out, name
    assert out["Accept"] == "*/*"


def test_response_drops_hop_by_hop() -> None:
    upstream = CIMultiDict([*HOP_BY_HOP, ("Content-Type", "text/html")])
    out = client_response_headers(upstream)
    for name, _ in HOP_BY_HOP:
        assert name not in out, name
    assert list(out.items()) == [("Content-Type", "text/html")]


def test_request_keeps_end_to_end_headers() -> None:
    incoming = _headers(
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("Authorization", "token abc"),
        ("X-App", "one"),
        ("X-App", "two"),
        ("Accept-Encoding", "gzip, br"),
        ("Content-Length", "12"),
    )
    out = _request(incoming)
    assert out.getall("Cookie") == ["a=1", "b=2"]
    assert out["Authorization"] == "token abc"
    assert out.getall("X-App") == ["one", "two"]
    assert out["Accept-Encoding"] == "gzip, br"
    assert out["Content-Length"] == "12"


def test_response_keeps_set_cookies_in_order_and_content_encoding() -> None:
    upstream = CIMultiDict(
        [
            ("Set-Cookie", "a=1; Path=/"),
            ("Content-Encoding", "gzip"),
            ("Set-Cookie", "b=2; HttpOnly"),
            ("Set-Cookie", "c=3; Secure"),
            ("Content-Length", "20"),
            ("X-App", "kept"),
        ]
    )
    out = client_response_headers(upstream)
    assert out.getall("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly", "c=3; Secure"]
    assert list(out.items()) == list(upstream.items())


def test_response_drops_names_listed_in_connection_only() -> None:
    upstream = CIMultiDict(
        [("Connection", "close, X-Internal"), ("X-Internal", "1"), ("X-Public", "2")]
    )
    out = client_response_headers(upstream)
    assert list(out.items()) == [("X-Public", "2")]


def test_response_does_not_modify_its_input() -> None:
    upstream = CIMultiDict([("Connection", "close"), ("X-App", "1")])
    client_response_headers(upstream)
    assert list(upstream.items()) == [("Connection", "close"), ("X-App", "1")]


def test_untrusted_forwarding_headers_are_replaced() -> None:
    out = _request(_headers(*UNTRUSTED_FORWARDING))
    assert out.getall("X-Forwarded-For") == [PEER]
    assert out.getall("X-Forwarded-Proto") == ["http"]
    assert out.getall("X-Forwarded-Host") == ["proxy.example"]
    assert out.getall("X-Forwarded-Prefix") == ["/user/alice"]
    assert out.getall("X-Forwarded-Context") == ["/user/alice"]
    assert out.getall("X-ProxyContextPath") == ["/user/alice"]
    for name in ("Forwarded", "X-Real-IP", "X-Forwarded-Port"):
        assert name not in out, name


def test_untrusted_forwarding_headers_at_root_leave_no_prefix() -> None:
    out = _request(_headers(*UNTRUSTED_FORWARDING), public_prefix="")
    for name in ("X-Forwarded-Prefix", "X-Forwarded-Context", "X-ProxyContextPath"):
        assert name not in out, name
    assert out.getall("X-Forwarded-For") == [PEER]


def test_https_client_scheme_is_reported() -> None:
    client = ClientView(peer=PEER, scheme="https", host="proxy.example")
    out = _request(_headers(("X-Forwarded-Proto", "http")), client=client)
    assert out.getall("X-Forwarded-Proto") == ["https"]


@pytest.mark.parametrize(
    ("incoming", "count", "expected"),
    [
        pytest.param(
            [
                ("X-Forwarded-For", "1.1.1.1, 2.2.2.2"),
                ("X-Forwarded-Proto", "http, https"),
                ("X-Forwarded-Host", "spoofed.example, public.example"),
                ("X-Forwarded-Prefix", "/outer"),
            ],
            1,
            {
                "X-Forwarded-For": f"2.2.2.2, {PEER}",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "public.example",
                "X-Forwarded-Prefix": "/outer/user/alice",
            },
            id="count-1-takes-last",
        ),
        pytest.param(
            [
                ("X-Forwarded-For", "9.9.9.9, 1.1.1.1"),
                ("X-Forwarded-For", "2.2.2.2"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "public.example, inner.example"),
            ],
            2,
            {
                "X-Forwarded-For": f"1.1.1.1, 2.2.2.2, {PEER}",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "public.example",
                "X-Forwarded-Prefix": "/user/alice",
            },
            id="count-2-across-repeated-headers",
        ),
        pytest.param(
            [
                ("X-Forwarded-For", "1.1.1.1"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "public.example"),
                ("X-Forwarded-Prefix", "/outer"),
            ],
            2,
            {
                "X-Forwarded-For": PEER,
                "X-Forwarded-Proto": "http",
                "X-Forwarded-Host": "proxy.example",
                "X-Forwarded-Prefix": "/user/alice",
            },
            id="count-2-fewer-values-trusts-none",
        ),
        pytest.param(
            [],
            1,
            {
                "X-Forwarded-For": PEER,
                "X-Forwarded-Proto": "http",
                "X-Forwarded-Host": "proxy.example",
                "X-Forwarded-Prefix": "/user/alice",
            },
            id="count-1-no-values",
        ),
    ],
)
def test_trusted_by_count(
    incoming: list[tuple[str, str]], count: int, expected: dict[str, str]
) -> None:
    out = _request(_headers(*incoming), trusted=TrustedProxies(count=count))
    for name, value in expected.items():
        assert out.getall(name) == [value], name


@pytest.mark.parametrize(
    ("peer", "incoming", "networks", "expected"),
    [
        pytest.param(
            "10.0.0.1",
            [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")],
            ("10.0.0.0/8",),
            {"X-Forwarded-For": "1.2.3.4, 10.0.0.1", "X-Forwarded-Proto": "https"},
            id="peer-trusted",
        ),
        pytest.param(
            "192.0.2.1",
            [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")],
            ("10.0.0.0/8",),
            {"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "http"},
            id="peer-outside",
        ),
        pytest.param(
            "10.0.0.1",
            [
                ("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.0.0.2, 10.0.0.3"),
                ("X-Forwarded-Host", "x.example, public.example, mid.example, inner.example"),
            ],
            ("10.0.0.0/8",),
            {
                "X-Forwarded-For": "1.2.3.4, 10.0.0.2, 10.0.0.3, 10.0.0.1",
                "X-Forwarded-Host": "public.example",
            },
            id="walks-several-trusted-hops",
        ),
        pytest.param(
            "127.0.0.1",
            [("X-Forwarded-For", "1.2.3.4, 5.6.7.8, 10.1.1.1")],
            ("127.0.0.1", "10.0.0.0/8"),
            {"X-Forwarded-For": "5.6.7.8, 10.1.1.1, 127.0.0.1"},
            id="stops-at-first-untrusted",
        ),
        pytest.param(
            "10.0.0.1",
            [],
            ("10.0.0.0/8",),
            {"X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "http"},
            id="peer-trusted-no-values",
        ),
        pytest.param(
            "::1",
            [("X-Forwarded-For", "2001:db8::5")],
            ("::1/128",),
            {"X-Forwarded-For": "2001:db8::5, ::1"},
            id="ipv6",
        ),
    ],
)
def test_trusted_by_networks(
    peer: str,
    incoming: list[tuple[str, str]],
    networks: tuple[str, ...],
    expected: dict[str, str],
) -> None:
    client = ClientView(peer=peer, scheme="http", host="proxy.example")
    out = _request(_headers(*incoming), client=client, trusted=_networks(*networks))
    for name, value in expected.items():
        assert out.getall(name) == [value], name


@pytest.mark.parametrize(
    ("public_prefix", "outer", "expected"),
    [
        pytest.param("/user/alice", None, "/user/alice", id="prefix"),
        pytest.param("", None, None, id="root"),
        pytest.param("", "/outer", "/outer", id="root-with-trusted-outer"),
        pytest.param("", "/outer/", "/outer", id="root-with-trusted-outer-slash"),
        pytest.param("/user/alice", "/outer", "/outer/user/alice", id="outer-prepended"),
        pytest.param("/user/alice", "/outer/", "/outer/user/alice", id="outer-slash-prepended"),
    ],
)
def test_prefix_headers(public_prefix: str, outer: str | None, expected: str | None) -> None:
    incoming = _headers(*([("X-Forwarded-Prefix", outer)] if outer else []))
    out = _request(incoming, public_prefix=public_prefix, trusted=TrustedProxies(count=1))
    for name in ("X-Forwarded-Prefix", "X-Forwarded-Context", "X-ProxyContextPath"):
        if expected is None:
            assert name not in out, name
        else:
            assert out.getall(name) == [expected], name


@pytest.mark.parametrize(
    ("host_header", "client_host", "expected"),
    [
        pytest.param("preserve", "proxy.example", "proxy.example", id="preserve"),
        pytest.param("upstream", "proxy.example", UPSTREAM_HOST, id="upstream"),
        pytest.param("preserve", None, UPSTREAM_HOST, id="client-sent-none"),
    ],
)
def test_host_policy(host_header: HostHeader, client_host: str | None, expected: str) -> None:
    client = ClientView(peer=PEER, scheme="http", host=client_host)
    out = _request(_headers(host=client_host), client=client, host_header=host_header)
    assert out.getall("Host") == [expected]


def test_no_forwarded_host_without_client_host() -> None:
    client = ClientView(peer=PEER, scheme="http", host=None)
    out = _request(_headers(("X-Forwarded-Host", "evil.example"), host=None), client=client)
    assert "X-Forwarded-Host" not in out


def test_request_does_not_modify_its_input() -> None:
    incoming = _headers(*UNTRUSTED_FORWARDING, ("Connection", "close"))
    before: list[Any] = list(incoming.items())
    _request(incoming)
    assert list(incoming.items()) == before


ENCODED = "a=1&CDSDASHBOARDS_JH_USER=%7B%22name%22%3A%20%22a%26b%22%7D"


@pytest.mark.parametrize(
    ("query", "info", "expected"),
    [
        pytest.param("", None, "", id="nothing"),
        pytest.param("a=1&b=%20", None, "a=1&b=%20", id="kept-byte-for-byte"),
        pytest.param("a=1&CDSDASHBOARDS_JH_USER=forged&b=2", None, "a=1&b=2", id="stripped"),
        pytest.param("CDSDASHBOARDS%5FJH%5FUSER=forged", None, "", id="encoded-name"),
        pytest.param("CDSDASHBOARDS_JH_USER", None, "", id="no-value"),
        pytest.param("a=1", '{"name": "a&b"}', ENCODED, id="added-encoded"),
        pytest.param("CDSDASHBOARDS_JH_USER=x", "{}", "CDSDASHBOARDS_JH_USER=%7B%7D", id="new"),
    ],
)
def test_the_user_query_parameter_is_rproxys_alone(
    query: str, info: str | None, expected: str
) -> None:
    assert with_user_query(query, info) == expected


def test_a_client_sent_identity_header_never_goes_upstream() -> None:
    incoming = CIMultiDict({"X-CDSDASHBOARDS-JH-USER": '{"name": "admin"}', "Accept": "*/*"})
    out = upstream_request_headers(
        incoming, ClientView("10.0.0.1", "http", "h"), public_prefix="", trusted=TrustedProxies(),
        host_header="preserve", upstream_host="up",
    )  # fmt: skip
    assert "X-CDSDASHBOARDS-JH-USER" not in out
    assert out["Accept"] == "*/*"


def test_user_info_has_jhsingle_fields_only() -> None:
    model = {"kind": "user", "name": "ann", "admin": False, "groups": ["g"], "auth_state": "secret"}
    assert json.loads(user_info(model)) == {"kind": "user", "name": "ann", "admin": False,
                                             "groups": ["g"]}  # fmt: skip


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("a=1; rproxy-x=s.1.m; b=2", "a=1; b=2", id="middle"),
        pytest.param("rproxy-x=s.1.m", "", id="only"),
        pytest.param("rproxy-a=1;rproxy-b-oauth-s=2; c=3", "c=3", id="several"),
        pytest.param("a=rproxy-1; xrproxy-=2", "a=rproxy-1; xrproxy-=2", id="names-only"),
    ],
)
def test_rproxys_own_cookies_are_taken_out(header: str, expected: str) -> None:
    assert without_cookies(header, OWN_COOKIES) == expected
