"""The activity reporter's decisions: what it sends, when it sends nothing, how it fails.

A small aiohttp server stands in for the hub's activity endpoint here, because a real hub cannot
be made to fail on demand; the real hub receiving reports is tests/test_jupyterhub_e2e.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support import StartUpstream
from yarl import URL

from rproxy.config import HubOptions
from rproxy.metrics import ProxyMetrics
from rproxy.plugins.hub_activity import ActivityRefused, ActivityReporter


class ActivityEndpoint:
    def __init__(self) -> None:
        self.reports: list[tuple[str, Any]] = []
        self.fail_with: int | None = None
        self.app = web.Application()
        self.app.router.add_post("/hub/api/users/ann/activity", self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        self.reports.append((request.headers["Authorization"], await request.json()))
        return web.Response(status=self.fail_with or 200)


@pytest.fixture
async def endpoint(start_upstream: StartUpstream) -> tuple[ActivityEndpoint, URL]:
    server = ActivityEndpoint()
    return server, await start_upstream(server.app)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _hub(url: URL, **changes: Any) -> HubOptions:
    base = HubOptions(
        api_token="hub-token",
        activity_url=str(url / "hub/api/users/ann/activity"),
        server_name="dash",
        force_alive=False,
    )
    return dataclasses.replace(base, **changes)


async def test_real_activity_is_reported_once(
    endpoint: tuple[ActivityEndpoint, URL], session: aiohttp.ClientSession
) -> None:
    server, url = endpoint
    metrics = ProxyMetrics()
    reporter = ActivityReporter(_hub(url), metrics)
    assert not await reporter.report_once(session)  # nothing happened yet
    metrics.last_activity = 1_700_000_000.5
    assert await reporter.report_once(session)
    assert not await reporter.report_once(session)  # nothing new since
    ((authorization, body),) = server.reports
    assert authorization == "token hub-token"
    assert body == {
        "servers": {"dash": {"last_activity": "2023-11-14T22:13:20.500000Z"}},
        "last_activity": "2023-11-14T22:13:20.500000Z",
    }


async def test_force_alive_reports_now_every_time(
    endpoint: tuple[ActivityEndpoint, URL], session: aiohttp.ClientSession
) -> None:
    server, url = endpoint
    reporter = ActivityReporter(_hub(url, force_alive=True), ProxyMetrics())
    assert await reporter.report_once(session)
    assert await reporter.report_once(session)
    assert len(server.reports) == 2


async def test_a_refused_report_is_an_error_and_is_sent_again(
    endpoint: tuple[ActivityEndpoint, URL], session: aiohttp.ClientSession
) -> None:
    server, url = endpoint
    metrics = ProxyMetrics()
    metrics.last_activity = 1_700_000_000.0
    reporter = ActivityReporter(_hub(url), metrics)
    server.fail_with = 500
    with pytest.raises(ActivityRefused, match="500"):
        await reporter.report_once(session)
    server.fail_with = None
    assert await reporter.report_once(session)  # the same activity, not lost
    assert [body["last_activity"] for _, body in server.reports] == [
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20Z",
    ]
    assert reporter.reports == 1
