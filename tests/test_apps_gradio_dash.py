"""Gradio and Dash in headless Chromium through rproxy under /user/me/, each as a user runs it.

Neither app learns its public prefix from rproxy's X-Forwarded-Prefix, and both build their API
URLs in JavaScript, where rproxy's rewriting cannot reach: each needs its own prefix option, filled
from ``{base_url}``. With it, rproxy stripping the prefix (the default) or keeping it
(``--no-strip-prefix``, with the option that also moves the app's routes; in the opt-in slower
group) both work. For each, a
real app process started by rproxy and a real browser prove that the UI renders under the prefix,
that no same-origin request fails or leaves the prefix and none goes to another origin, that the
app's live channel connects (Gradio's event stream, Dash's callback requests), and that one
interaction gives the function's output on the page: Gradio's textbox and Submit button, Dash's
input updating a div.

Without the option, in the same browser: Gradio's page loads unstyled, its /theme.css,
/static/js/... and POST /gradio_api/queue/join go to the root and get 404, and Submit shows
"Error"; Dash shows "Error loading layout" after /_dash-layout and /_dash-dependencies get 404.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from page_traffic import watched_page
from playwright.async_api import Browser, expect
from support import ready, running

APPS = Path(__file__).parent / "apps"
PREFIX = "/user/me/"


def _app(script: str, *args: str) -> list[str]:
    return [sys.executable, str(APPS / script), "--port", "{port}", *args]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param([], id="prefix-stripped"),
        pytest.param(["--no-strip-prefix"], id="prefix-kept", marks=pytest.mark.slow),
    ],
)
async def test_gradio_works_under_a_prefix_with_root_path(
    browser: Browser, options: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    argv = ["--prefix", PREFIX, "--ready-timeout", "60", *options, "--",
            *_app("gradio_app.py", "--root-path", "{base_url}")]  # fmt: skip
    async with running(*argv) as (url, launcher):
        await ready(launcher)
        async with watched_page(browser, url.origin()) as (page, traffic):
            await page.goto(str(url.with_path(PREFIX)))
            await expect(page.get_by_text("rproxy gradio test")).to_be_visible(timeout=20_000)
            await page.locator("#name textarea").fill("Ann")
            await page.get_by_role("button", name="Submit").click()
            await expect(page.locator("#greeting textarea")).to_have_value(
                "Hello, Ann! (from gradio)", timeout=20_000
            )
    urls = traffic.check(PREFIX)
    base = str(url.with_path(PREFIX.rstrip("/")))
    assert any(u.startswith(f"{base}/theme.css") for u in urls), urls  # the styles
    assert f"{base}/gradio_api/queue/join?" in urls  # the call, then its results as events
    assert any(u.startswith(f"{base}/gradio_api/queue/data?session_hash=") for u in urls), urls


@pytest.mark.parametrize(
    ("options", "prefix_option"),
    [
        pytest.param([], "--requests-prefix", id="prefix-stripped"),
        pytest.param(["--no-strip-prefix"], "--url-base", id="prefix-kept", marks=pytest.mark.slow),
    ],
)
async def test_dash_works_under_a_prefix_with_its_pathname_prefix(
    browser: Browser, options: list[str], prefix_option: str
) -> None:
    # Stripped: the browser asks under the prefix (requests_pathname_prefix), the app's routes
    # stay at /. Kept: both move there (url_base_pathname). The other pairings do not work.
    argv = ["--prefix", PREFIX, "--ready-timeout", "60", *options, "--",
            *_app("dash_app.py", prefix_option, "{base_url}/")]  # fmt: skip
    async with running(*argv) as (url, launcher):
        await ready(launcher)
        async with watched_page(browser, url.origin()) as (page, traffic):
            await page.goto(str(url.with_path(PREFIX)))
            greeting = page.locator("#greeting")
            # The first callback runs when the layout arrives, the second when the input changes.
            await expect(greeting).to_have_text("Hello, nobody! (from dash)", timeout=20_000)
            await page.locator("#name").fill("Ann")
            await expect(greeting).to_have_text("Hello, Ann! (from dash)", timeout=20_000)
    urls = traffic.check(PREFIX)
    base = str(url.with_path(PREFIX.rstrip("/")))
    assert f"{base}/_dash-layout" in urls
    assert f"{base}/_dash-dependencies" in urls
    assert any(u.startswith(f"{base}/_dash-update-component") for u in urls), urls
