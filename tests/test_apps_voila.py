"""Voila behind rproxy under /user/me/, in headless Chromium, as docs/apps.md runs it.

Voila renders the notebook, then its page talks to the notebook's kernel over a WebSocket under
the prefix: a button widget's click runs its Python callback in that kernel, which changes a
label on the page. The test proves that the page renders under the prefix, that no request to
rproxy's origin fails or leaves the prefix, that the kernel's WebSocket connects there, and that
the click makes that round trip.
"""

from __future__ import annotations

import sys
from pathlib import Path

from page_traffic import watched_page
from playwright.async_api import Browser
from support import ready, running
from yarl import URL

BIN = Path(sys.executable).parent
NOTEBOOK = Path(__file__).parent / "apps" / "voila_widgets.ipynb"
PREFIX = "/user/me/"
TIMEOUT = 30_000  # milliseconds: Voila runs the notebook before it sends the page


async def test_voila_runs_a_widget_under_a_prefix(browser: Browser, tmp_path: Path) -> None:
    command = [str(BIN / "voila"), str(NOTEBOOK), "--port={port}", "--no-browser",
               "--Voila.base_url={base_url}/", "--Voila.server_url=/"]  # fmt: skip
    argv = ["--prefix", PREFIX, "--ready-timeout", "60", "--", *command]
    async with running(*argv) as (url, launcher):
        await ready(launcher)
        async with watched_page(browser, url.origin()) as (page, seen):
            response = await page.goto(str(url.with_path(PREFIX)), timeout=TIMEOUT)
            assert response is not None
            assert response.ok, response.status
            await page.wait_for_selector("text=voila says 42, clicked 0 times", timeout=TIMEOUT)
            await page.click("button:has-text('Add one')")  # runs in the kernel, over the socket
            await page.wait_for_selector("text=voila says 42, clicked 1 times", timeout=TIMEOUT)
            # Voila's page links Font Awesome from a CDN itself (offline here: no icons)
            seen.check(PREFIX, other_hosts={"cdn.jsdelivr.net"})
            socket = seen.live_socket()
            assert URL(socket.url).path.startswith(f"{PREFIX}api/kernels/"), socket.url
