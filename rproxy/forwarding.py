"""Pure header policy: what crosses the proxy in each direction, and the X-Forwarded-* it adds.

Security first: incoming ``X-Forwarded-*``, ``Forwarded`` and ``X-Real-IP`` headers are written by
whoever sent the request, so they are dropped unless ``--trusted-proxies`` says the hops that set
them are ours; only then are their values passed on. Identity never comes from these headers.

Hop-by-hop headers (RFC 9110 7.6.1: Connection and the names it lists, Keep-Alive, TE, Trailer,
Transfer-Encoding, Upgrade, Proxy-*) are removed both ways; ``Expect`` too, because the server side
has already answered it. Everything else, several Set-Cookie headers and Content-Encoding included,
passes unchanged. No I/O happens here.

Identity is rproxy's to state: the JupyterHub user goes upstream as ``X-CDSDASHBOARDS-JH-USER`` and
the ``CDSDASHBOARDS_JH_USER`` query parameter only when configured, and a client's own copies of
either are always removed first. The headers through which authenticating proxies name a user to
apps that trust them (``Remote-User``, ``X-Forwarded-User``, ``X-Auth-Request-*``,
``X-WEBAUTH-USER``, ...) pass only from a trusted proxy, like ``X-Forwarded-*``: a client cannot
name itself to an app that believes them. rproxy's own cookies (its login) are not passed on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus

from multidict import CIMultiDict, CIMultiDictProxy

from rproxy.config import HostHeader, TrustedProxies

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_REQUEST_ONLY_DROPPED = frozenset(
    {
        "expect",
        "forwarded",
        "x-real-ip",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-context",
        "x-proxycontextpath",
        "x-cdsdashboards-jh-user",  # identity: only rproxy may say who the user is
    }
)

_IDENTITY = frozenset(  # set by authenticating proxies (oauth2-proxy, Apache, nginx auth_request)
    {
        "remote-user",
        "x-remote-user",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-forwarded-access-token",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-auth-request-preferred-username",
        "x-auth-request-access-token",
        "x-webauth-user",
        "x-webauth-email",
    }
)

_REQUEST_DROPPED = _HOP_BY_HOP | _REQUEST_ONLY_DROPPED
_UNTRUSTED_DROPPED = _REQUEST_DROPPED | _IDENTITY
_PLAIN_CONNECTION = frozenset({"keep-alive", "close", "upgrade"})

Headers = CIMultiDictProxy[str] | CIMultiDict[str]


@dataclass(frozen=True, slots=True)
class ClientView:
    """How the request reached rproxy: the peer's address, scheme and Host header."""

    peer: str
    scheme: str
    host: str | None


def hop_by_hop(headers: Headers, base: frozenset[str] = _HOP_BY_HOP) -> frozenset[str]:
    """The lower-case names to drop from ``headers``: ``base`` plus those Connection lists."""
    values = headers.getall("Connection", ())
    if not values or (len(values) == 1 and values[0].lower() in _PLAIN_CONNECTION):
        return base
    listed = {name.strip().lower() for value in values for name in value.split(",")}
    listed.discard("")
    return base if listed <= base else base | listed


def _without(headers: Headers, names: frozenset[str]) -> CIMultiDict[str]:
    out = CIMultiDict(headers)
    for name in names:
        if name in out:
            del out[name]
    return out


def _values(headers: Headers, name: str) -> list[str]:
    return [v.strip() for value in headers.getall(name, ()) for v in value.split(",") if v.strip()]


def _trusted_hops(forwarded_for: list[str], peer: str, trusted: TrustedProxies) -> int:
    """How many nearest hops set headers we believe (0: believe none)."""
    if trusted.count:
        return trusted.count
    if not trusted.networks or not trusted.trusts(peer):
        return 0
    hops = 1
    while hops < len(forwarded_for) and trusted.trusts(forwarded_for[-hops]):
        hops += 1
    return hops


def _trusted_value(headers: Headers, name: str, hops: int) -> str | None:
    values = _values(headers, name)
    return values[-hops] if hops and len(values) >= hops else None


def upstream_request_headers(
    incoming: Headers,
    client: ClientView,
    *,
    public_prefix: str,
    trusted: TrustedProxies,
    host_header: HostHeader,
    upstream_host: str,
) -> CIMultiDict[str]:
    """The headers to send upstream for a request that arrived with ``incoming``."""
    if trusted.count or trusted.networks:
        forwarded_for = _values(incoming, "X-Forwarded-For")
        hops = _trusted_hops(forwarded_for, client.peer, trusted)
    else:
        forwarded_for, hops = [], 0
    out = _without(incoming, hop_by_hop(incoming, _REQUEST_DROPPED if hops else _UNTRUSTED_DROPPED))
    chain = forwarded_for[-hops:] if hops and len(forwarded_for) >= hops else []
    chain.append(client.peer)
    out["X-Forwarded-For"] = ", ".join(chain)
    proto, host, outer_prefix = client.scheme, client.host, ""
    if hops:
        proto = _trusted_value(incoming, "X-Forwarded-Proto", hops) or proto
        host = _trusted_value(incoming, "X-Forwarded-Host", hops) or host
        outer_prefix = (_trusted_value(incoming, "X-Forwarded-Prefix", hops) or "").rstrip("/")
    out["X-Forwarded-Proto"] = proto
    if host:
        out["X-Forwarded-Host"] = host
    prefix = outer_prefix + public_prefix
    if prefix:
        out["X-Forwarded-Prefix"] = prefix
        out["X-Forwarded-Context"] = prefix
        out["X-ProxyContextPath"] = prefix
    if host_header == "upstream" or client.host is None:
        out["Host"] = upstream_host
    return out


def client_response_headers(upstream: Headers) -> CIMultiDict[str]:
    """The headers to send the client for an upstream response with headers ``upstream``."""
    return _without(upstream, hop_by_hop(upstream))


USER_HEADER = "X-CDSDASHBOARDS-JH-USER"
OWN_COOKIES = "rproxy-"  # the names of the cookies rproxy itself sets start so
USER_QUERY = "CDSDASHBOARDS_JH_USER"


def user_info(model: Mapping[str, Any]) -> str:
    """The hub user as jhsingle-native-proxy forwards it: JSON of kind, name, admin, groups."""
    return json.dumps({key: model.get(key) for key in ("kind", "name", "admin", "groups")})


def with_user_query(query: str, info: str | None) -> str:
    """The raw ``query`` without any CDSDASHBOARDS_JH_USER parameter, plus ``info`` when given."""
    kept = [
        part
        for part in (query.split("&") if query else [])
        if unquote_plus(part.partition("=")[0]) != USER_QUERY
    ]
    if info is not None:
        kept.append(f"{USER_QUERY}={quote(info, safe='')}")
    return "&".join(kept)


def without_cookies(header: str, prefix: str) -> str:
    """A Cookie header without the cookies whose names start with ``prefix`` (rproxy's own)."""
    kept = [c for c in header.split(";") if not c.strip().startswith(prefix)]
    return ";".join(kept).strip()
