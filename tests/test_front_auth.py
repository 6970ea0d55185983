"""front.py behind an authenticator (JupyterHub mode): it answers only what ``admit`` lets through.

rproxy runs with the JUPYTERHUB_* environment and ``--forward-user-info``, so the app carries the
auth middleware and the X-JupyterHub-Version header, as under a hub, but its authenticator is
``Doorkeeper``: an ``Authenticator`` with ``admit`` (auth.py's ``AdmitsByHeaders``) that lets in
the requests carrying ``X-Key: open`` and records which of its two questions was asked about which
path. ``admit`` is front.py's question, ``check`` aiohttp's (the middleware), so the records show
which protocol answered each request. The hub's own authenticator, asked of a real JupyterHub
with real tokens and cookies, is in tests/test_jupyterhub_e2e.py and tests/security.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict
from support import Refuse, StartProxy, StartUpstream
from test_client_connections import PREFIX, Client, Upstream, connect, request
from yarl import URL

from rproxy.auth import Admitted
from rproxy.errors import plain_response
from rproxy.forwarding import USER_HEADER
from rproxy.keys import HUB_USER

ENV = {
    "JUPYTERHUB_API_TOKEN": "api-token",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",  # nothing listens: never asked here
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ann",
    "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
    "JUPYTERHUB_USER": "ann",
}
ANN = {"kind": "user", "name": "ann", "admin": False, "groups": []}
KEY = "X-Key: open"


class Doorkeeper:
    """Lets in the requests with ``X-Key: open`` (as the user ann), on either question."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.stuck = stuck  # admit raises
        self.asked: list[str] = []  # the paths admit was asked about (front.py)
        self.checked: list[str] = []  # the paths check was asked about (aiohttp's path)

    async def check(self, request: web.Request) -> web.StreamResponse | None:
        self.checked.append(request.rel_url.raw_path)
        if request.headers.get("X-Key") == "open":
            request[HUB_USER] = ANN
            return None
        return plain_response(403, "Not for you.")

    async def identity(self, request: web.Request) -> None:
        return None

    async def admit(self, raw_path: str, headers: CIMultiDict[str]) -> Admitted | None:
        self.asked.append(raw_path)
        if self.stuck:
            raise RuntimeError("the door is stuck")
        return Admitted(ANN) if headers.get("X-Key") == "open" else None


async def _guarded(
    start_upstream: StartUpstream, start_proxy: StartProxy, doorkeeper: Any
) -> tuple[Upstream, URL]:
    recorder = Upstream()
    upstream = await start_upstream(recorder.app())
    proxy = await start_proxy(
        upstream,
        environ=ENV,
        authenticator=doorkeeper,
        forward_user_info=True,
        last_activity_interval=0,
    )
    return recorder, proxy


async def _statuses(client: Client, count: int) -> list[int]:
    return [(await client.reply()).status for _ in range(count)]


async def test_front_answers_an_admitted_request_with_its_user_and_the_hub_header(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    doorkeeper = Doorkeeper()
    recorder, proxy = await _guarded(start_upstream, start_proxy, doorkeeper)
    async with connect(proxy) as client:
        first = await client.exchange(request("a", KEY))
        second = await client.exchange(request("b?q=1", KEY))
    assert (first.status, second.status) == (200, 200)
    assert first.body == b"GET /a\n"  # the upstream's echo: it was reached
    assert first.headers["X-JupyterHub-Version"]
    assert second.headers["X-JupyterHub-Version"]
    assert (doorkeeper.asked, doorkeeper.checked) == ([f"{PREFIX}a", f"{PREFIX}b"], [])
    users = [seen.headers.getall(USER_HEADER) for seen in recorder.seen]
    assert users == [['{"kind": "user", "name": "ann", "admin": false, "groups": []}']] * 2


async def test_what_admit_does_not_let_in_goes_to_check_with_the_connection(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    doorkeeper = Doorkeeper()
    recorder, proxy = await _guarded(start_upstream, start_proxy, doorkeeper)
    async with connect(proxy) as client:
        statuses = [
            (await client.exchange(request(path, *headers))).status
            for path, headers in (("in", [KEY]), ("out", []), ("in-again", [KEY]))
        ]
    assert statuses == [200, 403, 200]
    assert recorder.paths == ["/in", "/in-again"]
    # front.py asked about the first two; from the refused one on, aiohttp has the connection
    assert doorkeeper.asked == [f"{PREFIX}in", f"{PREFIX}out"]
    assert doorkeeper.checked == [f"{PREFIX}out", f"{PREFIX}in-again"]


@pytest.mark.parametrize(
    ("first", "second", "statuses", "reached"),
    [
        pytest.param(("in", [KEY], b""), ("out", [], b""), [200, 403], ["in"], id="in-then-out"),
        pytest.param(("out", [], b""), ("in", [KEY], b""), [403, 200], ["in"], id="out-then-in"),
        pytest.param(
            ("out", [], b"a body for nobody"),
            ("in", [KEY], b"a body for the app"),
            [403, 200],
            ["in"],
            id="out-with-body-then-in-with-body",
        ),
    ],
)
async def test_pipelined_requests_are_each_decided_on_their_own(
    first: tuple[str, list[str], bytes],
    second: tuple[str, list[str], bytes],
    statuses: list[int],
    reached: list[str],
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
) -> None:
    doorkeeper = Doorkeeper()
    recorder, proxy = await _guarded(start_upstream, start_proxy, doorkeeper)
    pipeline = b"".join(
        request(path, *headers, method="POST" if body else "GET", body=body)
        for path, headers, body in (first, second)
    )
    async with connect(proxy) as client:
        client.send(pipeline)
        assert await _statuses(client, 2) == statuses
    assert recorder.paths == ["/" + path for path in reached]  # and the refused body: nowhere


async def test_an_admit_that_fails_leaves_the_decision_to_check(
    start_upstream: StartUpstream, start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    doorkeeper = Doorkeeper(stuck=True)
    recorder, proxy = await _guarded(start_upstream, start_proxy, doorkeeper)
    caplog.set_level(logging.ERROR, logger="rproxy.front")
    async with connect(proxy) as client:
        assert (await client.exchange(request("out"))).status == 403
        assert (await client.exchange(request("in", KEY))).status == 200
    assert doorkeeper.checked == [f"{PREFIX}out", f"{PREFIX}in"]
    assert recorder.paths == ["/in"]
    assert "the authenticator failed to admit" in caplog.text


async def test_an_authenticator_without_admit_keeps_front_out_of_the_way(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    # support.Refuse has only check: front.py must not answer anything, however plain
    recorder = Upstream()
    proxy = await start_proxy(await start_upstream(recorder.app()), authenticator=Refuse())
    async with connect(proxy) as client:
        client.send(request("a") + request("b"))
        assert await _statuses(client, 2) == [403, 403]
    assert recorder.seen == []
