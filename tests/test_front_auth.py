"""front.py behind an authenticator (JupyterHub mode): it answers what ``decide`` decides.

rproxy runs with the JUPYTERHUB_* environment and ``--forward-user-info``, so the app carries the
auth middleware and the X-JupyterHub-Version header, as under a hub, but its authenticator is
``support.Doorkeeper``: an ``Authenticator`` with ``decide`` (auth.py's ``DecidesByHead``) that
lets in the requests carrying ``X-Key: open``, refuses the others with 403, leaves
``.../callback`` to ``check`` (as the hub's authenticator leaves its OAuth callback), and records
which of its two questions was asked about which path. ``decide`` is front.py's question,
``check`` aiohttp's (the middleware), so the records show which protocol answered each request.
The hub's own authenticator, asked of a real JupyterHub with real tokens and cookies, is in
tests/test_jupyterhub_e2e.py, tests/plugins/test_jupyterhub.py and tests/security; a
differential fuzz test of front.py behind the Doorkeeper is in tests/fuzz/test_fuzz_front.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from support import Doorkeeper, Refuse, StartProxy, StartUpstream
from test_client_connections import PREFIX, Client, Reply, Upstream, connect, request
from yarl import URL

from rproxy.forwarding import USER_HEADER

ENV = {
    "JUPYTERHUB_API_TOKEN": "api-token",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",  # nothing listens: never asked here
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ann",
    "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
    "JUPYTERHUB_USER": "ann",
}
KEY = "X-Key: open"


Guarded = Callable[..., Awaitable[tuple[Doorkeeper, Upstream, URL]]]


@pytest.fixture
def guarded(start_upstream: StartUpstream, start_proxy: StartProxy) -> Guarded:
    """Start rproxy under the hub's environment with a ``Doorkeeper(**kwargs)`` in front of an
    ``Upstream``: the doorkeeper, the upstream's recorder, rproxy's URL."""

    async def start(**kwargs: bool) -> tuple[Doorkeeper, Upstream, URL]:
        doorkeeper, recorder = Doorkeeper(**kwargs), Upstream()
        proxy = await start_proxy(
            await start_upstream(recorder.app()),
            environ=ENV,
            authenticator=doorkeeper,
            forward_user_info=True,
            last_activity_interval=0,
        )
        return doorkeeper, recorder, proxy

    return start


async def _one_after_another(proxy: URL, *requests: tuple[str, list[str]]) -> list[Reply]:
    """The replies to GETs of ``(path, headers)``, each sent once the one before was answered,
    on one connection."""
    async with connect(proxy) as client:
        return [await client.exchange(request(path, *headers)) for path, headers in requests]


async def _statuses(client: Client, count: int) -> list[int]:
    return [(await client.reply()).status for _ in range(count)]


async def test_front_answers_an_admitted_request_with_its_user_and_the_hub_header(
    guarded: Guarded,
) -> None:
    doorkeeper, recorder, proxy = await guarded()
    async with connect(proxy) as client:
        first = await client.exchange(request("a", KEY))
        second = await client.exchange(request("b?q=1", KEY))
    assert (first.status, second.status) == (200, 200)
    assert first.body == b"GET /a\n"  # the upstream's echo: it was reached
    assert first.headers["X-JupyterHub-Version"]
    assert second.headers["X-JupyterHub-Version"]
    assert (doorkeeper.decided, doorkeeper.checked) == ([f"{PREFIX}a", f"{PREFIX}b"], [])
    users = [seen.headers.getall(USER_HEADER) for seen in recorder.seen]
    assert users == [['{"kind": "user", "name": "ann", "admin": false, "groups": []}']] * 2


async def test_front_sends_a_refusal_itself_and_goes_on(guarded: Guarded) -> None:
    doorkeeper, recorder, proxy = await guarded()
    replies = await _one_after_another(proxy, ("in", [KEY]), ("out", []), ("in-again", [KEY]))
    assert [reply.status for reply in replies] == [200, 403, 200]
    assert replies[1].body.startswith(b"403 Forbidden")
    assert replies[1].headers["X-JupyterHub-Version"]  # on rproxy's own pages too
    assert recorder.paths == ["/in", "/in-again"]
    assert doorkeeper.decided == [f"{PREFIX}in", f"{PREFIX}out", f"{PREFIX}in-again"]
    assert doorkeeper.checked == []  # all three on front.py


async def test_what_decide_cannot_answer_goes_to_check_with_the_connection(
    guarded: Guarded,
) -> None:
    doorkeeper, recorder, proxy = await guarded()
    replies = await _one_after_another(proxy, ("in", [KEY]), ("callback", []), ("in-again", [KEY]))
    assert [reply.status for reply in replies] == [200, 200, 200]
    assert b"answered by check" in replies[1].body
    assert recorder.paths == ["/in", "/in-again"]
    # front.py asked about the first two; from the callback on, aiohttp has the connection
    assert doorkeeper.decided == [f"{PREFIX}in", f"{PREFIX}callback"]
    assert doorkeeper.checked == [f"{PREFIX}callback", f"{PREFIX}in-again"]


@pytest.mark.parametrize(
    ("first", "second", "statuses", "checked"),
    [
        pytest.param(("in", [KEY], b""), ("out", [], b""), [200, 403], [], id="in-then-out"),
        pytest.param(("out", [], b""), ("in", [KEY], b""), [403, 200], [], id="out-then-in"),
        # a refused body is aiohttp's to read past: the connection goes there with it
        pytest.param(
            ("out", [], b"a body for nobody"),
            ("in", [KEY], b"a body for the app"),
            [403, 200],
            ["out", "in"],
            id="out-with-body-then-in-with-body",
        ),
    ],
)
async def test_pipelined_requests_are_each_decided_on_their_own(
    first: tuple[str, list[str], bytes],
    second: tuple[str, list[str], bytes],
    statuses: list[int],
    checked: list[str],
    guarded: Guarded,
) -> None:
    doorkeeper, recorder, proxy = await guarded()
    pipeline = b"".join(
        request(path, *headers, method="POST" if body else "GET", body=body)
        for path, headers, body in (first, second)
    )
    async with connect(proxy) as client:
        client.send(pipeline)
        assert await _statuses(client, 2) == statuses
    assert recorder.paths == ["/in"]  # and the refused body: nowhere
    assert doorkeeper.decided[0] == PREFIX + first[0]  # front.py read the pipeline first
    assert doorkeeper.checked == [PREFIX + path for path in checked]


async def test_a_decide_that_fails_leaves_the_decision_to_check(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    doorkeeper, recorder, proxy = await guarded(stuck=True)
    caplog.set_level(logging.ERROR, logger="rproxy.front")
    async with connect(proxy) as client:
        assert (await client.exchange(request("out"))).status == 403
        assert (await client.exchange(request("in", KEY))).status == 200
    assert doorkeeper.checked == [f"{PREFIX}out", f"{PREFIX}in"]
    assert recorder.paths == ["/in"]
    assert "the authenticator failed on" in caplog.text


async def test_an_authenticator_without_decide_keeps_front_out_of_the_way(
    start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    # support.Refuse has only check: front.py must not answer anything, however plain
    recorder = Upstream()
    proxy = await start_proxy(await start_upstream(recorder.app()), authenticator=Refuse())
    async with connect(proxy) as client:
        client.send(request("a") + request("b"))
        assert await _statuses(client, 2) == [403, 403]
    assert recorder.seen == []
