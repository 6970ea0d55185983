"""The authentication hook: one check, applied to every request, WebSocket upgrades included.

An ``Authenticator`` (the JupyterHub plugin supplies one) looks at a request and either lets it
through (None) or answers it (a 403, a redirect to log in). The check runs in a middleware in front
of every handler, so an upgrade request is refused before any upstream connection is made.
Without an authenticator, everything under the prefix is served: that is standalone mode.

An authenticator may also ``admit`` a request from its path and headers alone, without an aiohttp
request: front.py (rproxy's own protocol for plain forwards) asks that, and forwards only what it
admits; anything else, refusals and logins included, goes to aiohttp's protocol and this
middleware. ``admit`` never refuses and never answers: it can only say yes, with the user.
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
    """A request let through on its path and headers; ``user``: who it comes from, as the hub's
    user model (forwarded with ``--forward-user-info``), when the authenticator knows."""

    user: dict[str, Any] | None = None


class AdmitsByHeaders(Protocol):
    """An ``Authenticator`` that can also let a request through without an aiohttp request."""

    async def admit(
        self, raw_path: str, headers: CIMultiDict[str] | CIMultiDictProxy[str]
    ) -> Admitted | None:
        """Admitted only when ``check`` would let this request (target path ``raw_path``, no
        query) through; None for anything else, a refusal, a login to start or finish, or a
        question it cannot answer now: ``check`` then decides on aiohttp's path."""


Admit = Callable[[str, CIMultiDict[str]], Awaitable[Admitted | None]]


def header_admission(authenticator: Authenticator | None) -> Admit | None:
    """``authenticator.admit`` when it has one (see ``AdmitsByHeaders``), else None."""
    admit: Admit | None = getattr(authenticator, "admit", None)
    return admit


def auth_middleware(authenticator: Authenticator) -> Middleware:
    """A middleware that asks ``authenticator`` before any handler runs."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = await authenticator.check(request)
        return refusal if refusal is not None else await handler(request)

    return authenticate
