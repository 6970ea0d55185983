"""The authentication hook: one check, applied to every request, WebSocket upgrades included.

An ``Authenticator`` (the JupyterHub plugin supplies one) looks at a request and either lets it
through (None) or answers it (a 403, a redirect to log in). The check runs in a middleware in front
of every handler, so an upgrade request is refused before any upstream connection is made.
Without an authenticator, everything under the prefix is served: that is standalone mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


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


def auth_middleware(authenticator: Authenticator) -> Middleware:
    """A middleware that asks ``authenticator`` before any handler runs."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = await authenticator.check(request)
        return refusal if refusal is not None else await handler(request)

    return authenticate
