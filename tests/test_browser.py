"""What a browser sees, in headless Chromium through rproxy under a prefix: the demo, Streamlit."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from support import StartProxy, StartUpstream, ready, running

from examples.demo.app import make_demo_app

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by scripts/setup.sh
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_the_demo_page_works_under_a_prefix(
    browser: Browser, start_upstream: StartUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(await start_upstream(make_demo_app()), prefix="/user/me/")
    page = await browser.new_page()
    loaded: list[tuple[int, str]] = []
    page.on("response", lambda response: loaded.append((response.status, response.url)))
    try:
        await page.goto(str(proxy / "user/me/"))
        await page.wait_for_selector("#event-log li", timeout=20_000)
        await page.wait_for_function(
            "document.getElementById('ws-status').textContent === 'connected'", timeout=20_000
        )
        await page.fill("#ws-message", "hello browser")
        await page.click("#ws-send")
        await page.wait_for_selector("#ws-log li:has-text('echo: hello browser')", timeout=20_000)
        logo_width = await page.evaluate("document.querySelector('header img').naturalWidth")
    finally:
        await page.close()  # ends the event stream and the WebSocket before the servers stop
    assert logo_width > 0
    urls = [url for _, url in loaded]
    assert all(status < 400 for status, _ in loaded), loaded
    assert all("/user/me/" in url for url in urls), urls
    assert any(url.endswith("/user/me/static/style.css") for url in urls)


async def test_streamlit_renders_under_a_prefix(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real app's page: its HTML, scripts, styles and WebSocket all through rproxy, rewritten.
    monkeypatch.setenv("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    streamlit = str(Path(sys.executable).parent / "streamlit")
    argv = ["--prefix", "/user/me/", "--ready-timeout", "60", "--", streamlit, "hello",
            "--server.port", "{port}", "--server.headless", "true"]  # fmt: skip
    async with running(*argv) as (url, launcher):
        await ready(launcher)
        page = await browser.new_page()
        loaded: list[tuple[int, str]] = []
        page.on("response", lambda response: loaded.append((response.status, response.url)))
        try:
            await page.goto(str(url / "user/me/"))
            await page.wait_for_selector("text=Welcome to Streamlit", timeout=60_000)
        finally:
            await page.close()
    assert len(loaded) > 10
    assert all(status < 400 for status, _ in loaded), [x for x in loaded if x[0] >= 400]
