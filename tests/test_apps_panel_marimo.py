"""Panel, a plain Bokeh server app and marimo (edit and run) behind rproxy under /user/me/, in
headless Chromium, each started by rproxy as a real process (marimo's ``run`` mode in the opt-in
slower group).

Each app runs with the prefix stripped: it needs no option at all (keeping the prefix, with
``--no-strip-prefix`` and Panel's and Bokeh's ``--prefix {base_url}`` or marimo's
``--base-url {base_url}``, works too, but gains nothing: docs/apps.md). The test proves that the UI
renders under /user/me/, that no request the page makes to rproxy's origin fails or leaves the
prefix, that its WebSocket connects under the prefix and carries messages, and that one
interaction makes a round trip through the app's Python process: Panel's and Bokeh's button
callbacks run on the server and change another element; marimo runs its cells, and a
``mo.ui.button`` click re-runs the cell that shows its value.

The page's icon is the one request the browser makes on its own, which Playwright does not report:
the test asks for the same URL and checks the outcome. One is known to fail, and is pinned here:
Bokeh's page names no icon, so the browser asks for /favicon.ico, outside the prefix (rproxy's
404; on JupyterHub the hub answers it).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import lxml.html
import pytest
from page_traffic import watched_page
from playwright.async_api import Browser, Page
from support import ready, running
from yarl import URL

BIN = Path(sys.executable).parent
APPS = Path(__file__).parent / "apps"
PREFIX = "/user/me/"
TIMEOUT = 20_000  # milliseconds, for any one thing the page should show

RPROXY = ["--prefix", PREFIX, "--ready-timeout", "60"]


async def _open(page: Page, url: URL) -> tuple[str, int]:
    """Open ``url``; return the path of the icon the browser asks for as it loads the page (the
    HTML's <link rel=icon>, else /favicon.ico; scripts may change it later), and its status."""
    response = await page.goto(str(url))
    assert response is not None
    assert response.ok, response.status
    hrefs = lxml.html.fromstring(await response.body()).xpath(
        "//link[contains(concat(' ', normalize-space(@rel), ' '), ' icon ')]/@href"
    )
    icon = URL(response.url).join(URL(hrefs[0] if hrefs else "/favicon.ico"))
    return icon.path, (await page.request.get(str(icon))).status


@pytest.mark.parametrize(
    ("server", "before", "button", "after", "icon"),
    [
        # the server adds one to the slider, and says so
        pytest.param("panel", "Server says: 3", ".add-one button", "Server says: 4",
                     (f"{PREFIX}favicon.ico", 200), id="panel"),
        # Bokeh's page names no icon: the browser's own request leaves the prefix (rproxy's 404)
        pytest.param("bokeh", "Clicked 0 times", ".click-me button", "Clicked 1 times",
                     ("/favicon.ico", 404), id="bokeh"),
    ],
)  # fmt: skip
async def test_panel_and_bokeh_serve(
    browser: Browser, server: str, before: str, button: str, after: str, icon: tuple[str, int]
) -> None:
    command = [str(BIN / server), "serve", str(APPS / f"{server}_app.py"),
               "--address", "127.0.0.1", "--port", "{port}"]  # fmt: skip
    async with running(*RPROXY, "--", *command) as (url, launcher):
        await ready(launcher)
        async with watched_page(browser, url.origin()) as (page, seen):
            asked = await _open(page, url.with_path(PREFIX))
            await page.wait_for_selector(f"text={before}", timeout=TIMEOUT)
            await page.click(button)  # a Python callback on the server changes the page
            await page.wait_for_selector(f"text={after}", timeout=TIMEOUT)
            seen.check(PREFIX)
            seen.live_socket()
            assert URL(page.url).path == f"{PREFIX}{server}_app"
    assert asked == icon


@pytest.fixture
def notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the notebook (marimo edit saves it as it formats it), and marimo's config,
    cache and state kept out of the home directory."""
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    return Path(shutil.copy(APPS / "marimo_notebook.py", tmp_path / "notebook.py"))


@pytest.mark.parametrize("mode", ["edit", pytest.param("run", marks=pytest.mark.slow)])
async def test_marimo(browser: Browser, notebook: Path, mode: str) -> None:
    command = [str(BIN / "marimo"), mode, str(notebook), "--host", "127.0.0.1",
               "--port", "{port}", "--headless", "--no-token"]  # fmt: skip
    if mode == "edit":
        command.append("--skip-update-check")
    async with running(*RPROXY, "--", *command) as (url, launcher):
        await ready(launcher)
        async with watched_page(browser, url.origin()) as (page, seen):
            icon = await _open(page, url.with_path(PREFIX))
            if mode == "edit":
                await page.wait_for_selector("[data-testid=cell-editor] >> text=marimo says",
                                             timeout=TIMEOUT)  # fmt: skip
                # marimo 0.25 does not run a notebook it opens for editing: run all its cells.
                await page.click(
                    "[data-testid=chrome-controls-bottom-right] [data-testid=run-button]"
                )
            await page.wait_for_selector("text=marimo says 42, clicked 0 times", timeout=TIMEOUT)
            await page.click("button:has-text('Add one')")
            await page.wait_for_selector("text=marimo says 42, clicked 1 times", timeout=TIMEOUT)
            seen.check(PREFIX)
            seen.live_socket()
    assert icon == (f"{PREFIX}favicon.ico", 200)
    if mode == "edit":
        assert any(URL(u).path == f"{PREFIX}api/kernel/run" for u in seen.requests), seen.requests
