"""Shared fixtures: real upstream servers and real rproxy instances on 127.0.0.1, random ports,
and headless Chromium (``browser``, and ``hub_browser``, which reaches 127.0.0.1 by a host name as
a hub user's browser reaches the hub). Tests marked ``slow`` are skipped unless
``RPROXY_SLOW_TESTS=1`` (``scripts/test.sh --slow`` sets it, after installing their apps).

``start_proxy`` runs rproxy exactly as the command line does (``make_runner``), so connection
handling and shutdown behave as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, async_playwright
from support import CHROMIUM, FLAGS, HUB_HOST, SLOW_TESTS, StartProxy, StartUpstream, listen
from yarl import URL

from rproxy.app import make_runner
from rproxy.auth import Authenticator
from rproxy.rewriters.base import Rewriter
from rproxy.sources import load_config


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # slow_on("jupyterhub-5"): slow where the parameters' id has that part
        marker = item.get_closest_marker("slow_on")
        callspec = getattr(item, "callspec", None)
        if (
            marker is not None
            and callspec is not None
            and any(f"-{part}-" in f"-{callspec.id}-" for part in marker.args)
        ):
            item.add_marker(pytest.mark.slow)
    if SLOW_TESTS:
        return
    skip = pytest.mark.skip(reason="the opt-in slower group: scripts/test.sh --slow runs it")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


@pytest.fixture
async def start_upstream() -> AsyncIterator[StartUpstream]:
    servers: list[TestServer] = []

    async def start(app: web.Application) -> URL:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server.make_url("")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def start_proxy() -> AsyncIterator[StartProxy]:
    """Start rproxy in front of ``upstream`` with command-line style ``options``; return its URL."""
    runners: list[web.AppRunner] = []

    async def start(
        upstream: URL | str,
        *,
        rewriter_instances: list[Rewriter] | None = None,
        authenticator: Authenticator | None = None,
        environ: dict[str, str] | None = None,
        **options: Any,
    ) -> URL:
        config = load_config({"upstream": str(upstream), **options}, environ or {})
        runner = make_runner(config, rewriters=rewriter_instances, authenticator=authenticator)
        runners.append(runner)
        return await listen(runner)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that shows bodies as sent: no decompression, no cookies kept."""
    async with aiohttp.ClientSession(
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:
        yield session


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium, through Playwright."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def hub_browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium, which finds ``HUB_HOST`` at 127.0.0.1: the Host header and the
    origin are a public name's, as a hub user's browser sends them, not localhost's."""
    rules = f"--host-resolver-rules=MAP {HUB_HOST} 127.0.0.1"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, rules])
        try:
            yield browser
        finally:
            await browser.close()
