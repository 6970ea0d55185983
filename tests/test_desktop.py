"""Desktop mode end to end: Xvnc started by rproxy, a Tk app on it, noVNC in headless Chromium.

Real parts only: TigerVNC's Xvnc and Debian's noVNC (installed by scripts/test.sh), a small Tk
program as the desktop app, Chromium driven by Playwright. The browser opens the prefix, noVNC
connects through rproxy's bridge, and the app's colour shows on noVNC's canvas.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright
from support import CHROMIUM, FLAGS, listen
from yarl import URL

from rproxy.app import make_runner
from rproxy.cli import parse_config

APP = """
import tkinter as tk
root = tk.Tk()
root.geometry("800x600+0+0")
canvas = tk.Canvas(root, width=800, height=600, bg="#ff6600", highlightthickness=0)
canvas.pack()
root.mainloop()
"""
# noVNC's canvas shows the app's orange once frames arrive (the Xvnc root is black).
_ORANGE_AT_CENTRE = """() => {
  const canvas = document.querySelector('#noVNC_container canvas');
  if (!canvas || !document.documentElement.classList.contains('noVNC_connected')) return false;
  const [r, g, b] = canvas.getContext('2d').getImageData(200, 200, 1, 1).data;
  return r > 200 && g > 80 && g < 130 && b < 40;
}"""


@pytest.fixture
async def desktop(tmp_path: Path) -> AsyncIterator[URL]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    argv = ["--desktop", "--desktop-geometry", "800x600", "--prefix", "/user/ann/",
            "--ip", "127.0.0.1", "--port", "0", "--", sys.executable, str(app)]  # fmt: skip
    runner = make_runner(parse_config(argv, {}))
    try:
        url = await listen(runner)
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            while True:  # until Xvnc answers on its socket: api/status says 200
                async with http.get(url / "user/ann/api/status") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        await runner.cleanup()


async def test_the_desktop_shows_in_the_browser_under_the_prefix(desktop: URL) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 800})
            await page.goto(str(desktop / "user/ann/"))
            assert "/user/ann/vnc/vnc.html" in page.url
            await page.wait_for_function(_ORANGE_AT_CENTRE, timeout=60_000)
            shot = await page.locator("#noVNC_container canvas").screenshot()
            await page.close()
        finally:
            await browser.close()
    assert len(shot) > 1000  # a PNG of the canvas


def _listening_tcp_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_the_vnc_server_has_no_tcp_port(desktop: URL) -> None:
    # VNC (5900+) and X (6000+) ports stay closed: the only way in is rproxy's bridge.
    assert not {p for p in _listening_tcp_ports() if 5900 <= p <= 5999 or 6000 <= p <= 6099}
    modes = _socket_folder_modes()
    assert modes
    assert modes == {0o700}


def _socket_folder_modes() -> set[int]:
    return {p.parent.stat().st_mode & 0o777 for p in Path("/tmp").glob("rproxy-desktop-*/vnc.sock")}
