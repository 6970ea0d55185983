"""The authentication hook: one check, applied to every request, WebSocket upgrades included.

An ``Authenticator`` (the JupyterHub plugin supplies one) looks at a request and either lets it
through (None) or answers it (a 403, a redirect to log in). The check runs in a middleware in front
of every handler, so an upgrade request is refused before any upstream connection is made.
Without an authenticator, everything under the prefix is served: that is standalone mode.

An authenticator may also ``decide`` from a request's head alone (method, target, headers,
whether it came over TLS), without an aiohttp request: front.py (rproxy's own protocol for plain
forwards) asks that, forwards only what it admits and sends the page of what it refuses; where
``decide`` has no answer (None), the request goes to aiohttp's protocol and this middleware.
The HubAuthenticator's ``check`` is its ``decide``, so both protocols decide alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict, CIMultiDictProxy


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request comes from, as the authenticator knows them (``api/user`` shows it)."""

    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    scopes: tuple[str, ...] = field(default=())


class Authenticator(Protocol):
    async def check(self, request: web.Request) -> web.StreamResponse | None:
        """None to let ``request`` through, or the response that refuses it."""

    async def identity(self, request: web.Request) -> Identity | None:
        """Who an admitted ``request`` comes from; None when the authenticator cannot tell."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request let through; ``user``: who it comes from, as the hub's user model (forwarded with
    ``--forward-user-info``), when the authenticator knows."""

    user: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What ``decide`` may look at: no body, no connection."""

    method: str
    target: str  # the raw path and query
    headers: CIMultiDict[str] | CIMultiDictProxy[str]
    secure: bool  # the client's connection is TLS
    upgrade: bool  # a WebSocket handshake

    @property
    def raw_path(self) -> str:
        """The target's path, as aiohttp's ``rel_url.raw_path``."""
        return self.target.partition("#")[0].partition("?")[0]


Decision = Admitted | web.StreamResponse | None


class DecidesByHead(Protocol):
    """An ``Authenticator`` that can also decide without an aiohttp request."""

    async def decide(self, head: RequestHead) -> Decision:
        """``check``'s answer to the request of ``head``: Admitted where ``check`` lets it
        through, the page that refuses it, or None where only ``check`` can answer."""


def head_decision(
    authenticator: Authenticator | None,
) -> Callable[[RequestHead], Awaitable[Decision]] | None:
    """``authenticator.decide`` when it has one (see ``DecidesByHead``), else None."""
    decide: Callable[[RequestHead], Awaitable[Decision]] | None = getattr(
        authenticator, "decide", None
    )
    return decide


def auth_middleware(authenticator: Authenticator) -> Middleware:
    """A middleware that asks ``authenticator`` before any handler runs."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = await authenticator.check(request)
        return refusal if refusal is not None else await handler(request)

    return authenticate
