"""JupyterHub mode: every request to the server authenticated through the hub, as OAuth.

``HubAuthenticator`` is the ``Authenticator`` the auth middleware asks on every request, WebSocket
upgrades included. It finds the user from an ``Authorization: token ...`` header or from rproxy's
signed cookie, asks the hub who owns that token (jupyterhub.services.auth.HubOAuth, awaited with
``sync=False``, its answers cached by HubOAuth), and decides access from the hub's scopes
(JUPYTERHUB_OAUTH_ACCESS_SCOPES), JUPYTERHUB_USER, JUPYTERHUB_GROUP and JUPYTERHUB_ANYONE=1, as
jhsingle-native-proxy does. Without a user, a browser's page request is sent to the hub's login
(OAuth with state, and PKCE where the installed jupyterhub has its helpers: 6.0 and later; a 5.x
hub knows no PKCE) and everything else gets 403.

What is remembered about a browser's login is bound to the hub's session, as in JupyterHub's own
single-user server: the hub's ``jupyterhub-session-id`` cookie is part of every cache key of a
cookie login. Logging out of the hub clears that cookie and revokes the session's tokens, so the
browser's next request misses every cache, the hub says the token is gone, and the browser is sent
to the login again (or refused) at once. Tokens in an Authorization header keep their cache.

``{prefix}logout`` is the hub's logout, as in jupyterhub-singleuser (JupyterLab's "Log Out" goes
there): rproxy forgets the browser's login and sends it on to the hub's ``logout``, which ends the
hub's session; the app's own ``/logout``, if it has one, is not reached in hub mode.

``{prefix}oauth_callback`` (or the path of JUPYTERHUB_OAUTH_CALLBACK_URL) exchanges the code for
a token and sets the cookie. All but the callback is decided from the request's head (``decide``):
``check`` is ``decide`` for aiohttp's protocol, and front.py asks ``decide`` itself, so both
protocols answer a request alike.

HubOAuth's own cookie and state helpers need a tornado handler, so the cookies here are rproxy's:
HMAC-signed with a key derived from JUPYTERHUB_API_TOKEN (plugins/cookies.py), HttpOnly, scoped to
the prefix. The OAuth state travels in a signed cookie of its own, so any worker of ``--workers``
can finish a login another one began. The URL a login returns to is always inside the prefix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import jupyterhub
from aiohttp import web
from jupyterhub.services.auth import HubOAuth
from jupyterhub.utils import url_path_join
from multidict import CIMultiDict, CIMultiDictProxy
from tornado.web import HTTPError
from yarl import URL

from rproxy.auth import Admitted, Authenticator, Decision, Identity, RequestHead
from rproxy.config import Config
from rproxy.errors import plain_response
from rproxy.forwarding import OWN_COOKIES
from rproxy.keys import CONFIG, HUB_USER, METRICS, RESPONSE_HEADERS
from rproxy.plugins.cookies import CookieSigner, cookie_value
from rproxy.plugins.hub_activity import ActivityReporter
from rproxy.urls import has_dot_segment
from rproxy.websocket import is_upgrade

logger = logging.getLogger(__name__)

_TOKEN_HEADER = re.compile(r"(?:token|bearer)\s+(\S+)\s*$", re.IGNORECASE)
_STATE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_STATE_MAX_AGE = 600
_COOKIE_MAX_AGE = 30 * 24 * 3600  # the hub's token expiry is what really limits a session
# A credential let in is let in again for this long without asking the hub (HubOAuth itself keeps
# the hub's answers for --hub-cache-seconds, its cache_max_age): never longer than that, so a
# revoked token works at most --hub-cache-seconds longer. At most _RECENT_MAX are remembered.
_RECENT_SECONDS = 10.0
_RECENT_MAX = 4096

_SESSION_COOKIE = "jupyterhub-session-id"  # the hub's (JupyterHub's handlers/base.py), path /


@dataclass(frozen=True, slots=True)
class _Credential:
    """What a request presents: a token from an Authorization header, or rproxy's signed cookie
    with the hub's session id it came with ("" for a token, or without that cookie)."""

    kind: Literal["token", "cookie"]
    value: str
    session: str = ""


class HubAuthenticator:
    """Authenticates every request with the hub; see the module docstring."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.monotonic) -> None:
        hub = config.hub
        self._hub = hub
        self._prefix = config.prefix
        self._oauth = HubOAuth(
            api_token=hub.api_token,
            api_url=hub.api_url,
            oauth_client_id=hub.client_id,
            base_url=config.prefix,
            hub_prefix=url_path_join(hub.hub_base_url, "hub") + "/",
            hub_host=hub.hub_host,
            access_scopes=set(hub.access_scopes),
            cache_max_age=hub.hub_cache_seconds,
            oauth_redirect_uri=hub.callback_url or config.prefix + "oauth_callback",
            keyfile=hub.ssl_keyfile,
            certfile=hub.ssl_certfile,
            client_ca=hub.ssl_client_ca,
        )
        self.callback_path = URL(self._oauth.oauth_redirect_uri).raw_path
        self._logout_path = config.prefix + "logout"
        self._hub_logout = self._oauth.hub_host + url_path_join(self._oauth.hub_prefix, "logout")
        self._signer = CookieSigner(hub.api_token.encode())
        self._cookie = OWN_COOKIES + re.sub(r"[^A-Za-z0-9_-]", "_", hub.client_id)
        self._clock = clock
        self._cache_seconds = min(_RECENT_SECONDS, hub.hub_cache_seconds)  # 0: no cache at all
        self._recent: dict[_Credential, tuple[float, dict[str, Any]]] = {}  # -> (until, user)
        # PKCE where HubOAuth has its helpers (jupyterhub 6.0 and later), the plain flow on 5.x
        self._pkce = callable(getattr(self._oauth, "generate_pkce_code_challenge", None))

    async def check(self, request: web.Request) -> web.StreamResponse | None:
        head = RequestHead(
            request.method,
            request.rel_url.raw_path_qs,
            request.headers,
            request.secure,
            is_upgrade(request),
        )
        decision = await self.decide(head)
        if decision is None:
            return await self._callback(request)
        if isinstance(decision, Admitted):
            if decision.user is not None:
                request[HUB_USER] = decision.user
            return None
        return decision

    async def decide(self, head: RequestHead) -> Decision:
        """``check``'s answer from the request's head; None for the OAuth callback alone."""
        path = head.raw_path
        if path == self.callback_path:
            return None
        if not path.startswith(self._prefix):
            return Admitted()  # the proxy answers 404, or redirects the bare prefix
        if path == self._logout_path and head.method in ("GET", "HEAD"):
            return self._logout()
        credential = self._credential(head.headers)
        if credential is None:
            return self._login(head)
        recent = self._recently_admitted(credential)
        if recent is not None:
            return Admitted(recent)
        try:
            model = await self._user(credential)
        except HTTPError as exc:
            logger.error("cannot check the user with the hub: %s", exc.log_message or exc)
            return plain_response(502, "The hub could not be asked who you are; try again.")
        if model is None:
            refusal = self._login(head)
            if credential.kind == "cookie":  # revoked or expired: the browser forgets it
                refusal.del_cookie(self._cookie, path=self._prefix)
            return refusal
        if not self._allowed(model):
            logger.warning(
                "refused %s %s: hub user %r may not use this server",
                head.method,
                path,
                model.get("name"),
            )
            return plain_response(403, "You are logged in, but not allowed on this server.")
        self._remember(credential, model)
        return Admitted(model)

    async def identity(self, request: web.Request) -> Identity | None:
        model = request.get(HUB_USER)
        if model is None:
            return None
        return Identity(
            name=str(model.get("name", "")),
            groups=tuple(model.get("groups") or ()),
            admin=bool(model.get("admin", False)),
            scopes=tuple(model.get("scopes") or ()),
        )

    def _credential(self, headers: CIMultiDict[str] | CIMultiDictProxy[str]) -> _Credential | None:
        """What the request presents: an ``Authorization: token ...`` header, else rproxy's
        signed cookie with the hub's session id; None without either."""
        header = _TOKEN_HEADER.match(headers.get("Authorization", ""))
        if header:
            return _Credential("token", header.group(1))
        cookies = headers.get("Cookie", "")
        signed = cookie_value(cookies, self._cookie)
        if not signed:
            return None
        return _Credential("cookie", signed, cookie_value(cookies, _SESSION_COOKIE) or "")

    async def _user(self, credential: _Credential) -> dict[str, Any] | None:
        """The hub's user model for ``credential``'s token, or None. HubOAuth caches the hub's
        answers under the token and the session id, as it does in jupyterhub-singleuser."""
        if credential.kind == "token":
            token: str | None = credential.value
        else:
            token = self._signer.verify(self._cookie, credential.value, _COOKIE_MAX_AGE)
        if not token:
            return None
        model: dict[str, Any] | None = await self._oauth.user_for_token(
            token,
            use_cache=self._cache_seconds > 0,  # HubOAuth's max age 0 would mean "for ever"
            session_id=credential.session,
            sync=False,
        )
        return model

    def _recently_admitted(self, credential: _Credential) -> dict[str, Any] | None:
        """The user ``credential`` was let in as recently as ``_cache_seconds`` ago, or None."""
        entry = self._recent.get(credential)
        if entry is None:
            return None
        until, model = entry
        if self._clock() < until:
            return model
        del self._recent[credential]
        return None

    def _remember(self, credential: _Credential, model: dict[str, Any]) -> None:
        if not self._cache_seconds:
            return
        if len(self._recent) >= _RECENT_MAX:
            self._recent.clear()  # a bound, not a policy: they are asked about again
        self._recent[credential] = (self._clock() + self._cache_seconds, model)

    def _allowed(self, model: dict[str, Any]) -> bool:
        hub = self._hub
        if hub.anyone:
            return True
        if hub.group and hub.group in (model.get("groups") or ()):
            return True
        if self._oauth.access_scopes:
            return bool(self._oauth.check_scopes(self._oauth.access_scopes, model))
        return bool(hub.user) and model.get("name") == hub.user

    def _login(self, head: RequestHead) -> web.StreamResponse:
        if head.method not in ("GET", "HEAD") or head.upgrade:
            return plain_response(403, "Log in through the hub first.")
        if "text/html" not in head.headers.get("Accept", ""):
            return plain_response(403, "Log in through the hub first.")
        state = secrets.token_urlsafe(24)
        parameters = {"state": state}
        verifier = ""
        if self._pkce:
            verifier, challenge, method = self._oauth.generate_pkce_code_challenge()
            parameters |= {"code_challenge": challenge, "code_challenge_method": method}
        query = urlencode(parameters)
        login = self._oauth.login_url
        response = plain_response(302, Location=f"{login}{'&' if '?' in login else '?'}{query}")
        name = self._state_cookie(state)
        value = json.dumps({"next": self._inside(head.target.partition("#")[0]), "v": verifier})
        response.set_cookie(name, self._signer.sign(name, value), max_age=_STATE_MAX_AGE,
                            **self._cookie_options(head.secure, head.headers))  # fmt: skip
        return response

    def _logout(self) -> web.StreamResponse:
        """Forget the browser's login here and send it to the hub's logout, which ends its
        session there (and so every other server's login of that session)."""
        response = plain_response(302, Location=self._hub_logout)
        response.del_cookie(self._cookie, path=self._prefix)
        return response

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        if "error" in request.query:
            logger.warning("the hub refused the login: %r", request.query["error"][:200])
            return plain_response(403, "The hub did not grant access to this server.")
        code, state = request.query.get("code", ""), request.query.get("state", "")
        name = self._state_cookie(state) if _STATE.fullmatch(state) else ""
        stored = self._signer.verify(name, request.cookies.get(name, ""), _STATE_MAX_AGE)
        if not code or stored is None:
            logger.warning("OAuth callback without a matching state cookie: login not finished")
            return plain_response(400, "This login link is stale or was not started here; open "
                                  "the page again.")  # fmt: skip
        started = json.loads(stored)
        pkce = {"code_verifier": started["v"]} if started["v"] else {}
        try:
            token = await self._oauth.token_for_code(code, sync=False, **pkce)
        except HTTPError as exc:
            logger.error("the hub did not exchange the OAuth code: %s", exc.log_message or exc)
            return plain_response(403, "The hub did not accept this login; try again.")
        response = plain_response(302, Location=self._inside(started["next"]))
        options = self._cookie_options(request.secure, request.headers)
        response.set_cookie(self._cookie, self._signer.sign(self._cookie, token),
                            max_age=_COOKIE_MAX_AGE, **options)  # fmt: skip
        response.del_cookie(name, path=options["path"])
        return response

    def _state_cookie(self, state: str) -> str:
        return f"{self._cookie}-oauth-{state[:16]}"

    def _inside(self, target: str) -> str:
        """``target`` if it is a path inside the prefix, else the prefix: no open redirect."""
        ok = (
            target.startswith(self._prefix)
            and "\\" not in target
            and not any(c < " " or c == "\x7f" for c in target)
            and not has_dot_segment(target.partition("?")[0])
        )
        return target if ok else self._prefix

    def _cookie_options(
        self, secure: bool, headers: CIMultiDict[str] | CIMultiDictProxy[str]
    ) -> dict[str, Any]:
        https = secure or headers.get("X-Forwarded-Proto", "") == "https"
        return {"path": self._prefix, "httponly": True, "samesite": "Lax", "secure": https}


def setup(
    app: web.Application, config: Config, given: Authenticator | None
) -> Authenticator | None:
    """Join ``app`` to the hub that started it; return the authenticator to use.

    Adds the X-JupyterHub-Version header the hub checks, and reports activity in the background.
    With ``--authtype oauth`` (the default under a hub) the HubAuthenticator guards everything,
    unless the caller brought its own; with ``--authtype none``, nobody is asked, loudly.
    """
    app[RESPONSE_HEADERS].append(("X-JupyterHub-Version", jupyterhub.__version__))
    app.cleanup_ctx.append(_activity)
    if config.hub.authtype == "none":
        logger.warning(
            "JupyterHub mode with --authtype none: NO AUTHENTICATION, anyone who can reach "
            "%s is let in as the owner of this server",
            config.prefix,
        )
        return given
    authenticator = given or HubAuthenticator(config)
    logger.info(
        "JupyterHub mode: every request authenticated by the hub at %s (user %s, server %r)",
        config.hub.api_url,
        config.hub.user,
        config.hub.server_name,
    )
    return authenticator


async def _activity(app: web.Application) -> AsyncIterator[None]:
    reporter = ActivityReporter(app[CONFIG].hub, app[METRICS])
    task = asyncio.create_task(reporter.run())
    yield
    task.cancel()
    await asyncio.wait({task})
