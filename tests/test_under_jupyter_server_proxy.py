"""docs/deploy.md's pattern: rproxy and its app in a Jupyter server, behind jupyter-server-proxy.

A real ``jupyter server`` (with its token and a base URL, as under a hub) runs the documented
``c.ServerProxy.servers`` entry; jupyter-server-proxy starts rproxy on the first request, rproxy
starts the demo app. Headless Chromium opens ``{base_url}demo/``: the page, its scripts, its
event stream and its WebSocket all go through Jupyter Server, jupyter-server-proxy and rproxy.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser
from support import free_port, wait_for_server
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = secrets.token_hex(16)
BASE = "/user/ann/"

_CONFIG = """
c = get_config()  # noqa
c.ServerProxy.servers = {{
    "demo": {{
        "command": [
            {rproxy!r}, "--authtype", "none", "--ip", "127.0.0.1", "--port", "{{port}}",
            "--prefix", "{{base_url}}demo/", "--",
            {python!r}, {demo!r}, "--port", "{{{{port}}}}",
        ],
        "absolute_url": True,
        "timeout": 30,
    }}
}}
"""


@pytest.fixture
def jupyter(tmp_path: Path) -> Iterator[URL]:
    config = tmp_path / "jupyter_server_config.py"
    config.write_text(
        _CONFIG.format(
            rproxy=str(BIN / "rproxy"),
            python=sys.executable,
            demo=str(ROOT / "examples" / "demo" / "app.py"),
        )
    )
    port = free_port()
    log = tmp_path / "jupyter.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "jupyter"), "server", f"--config={config}", "--no-browser", "--allow-root",
             "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.base_url={BASE}",
             f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp_path}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
                 "JUPYTER_DATA_DIR": str(tmp_path / "data")},
        )  # fmt: skip
    url = URL(f"http://127.0.0.1:{port}{BASE}")
    try:
        wait_for_server(url / "api", process, log)
        yield url
    finally:
        process.terminate()  # Jupyter Server stops jupyter-server-proxy's processes with it
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_rproxy_and_its_app_under_jupyter_server_proxy(
    jupyter: URL, browser: Browser
) -> None:
    page = await browser.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        # Jupyter's token logs the browser in (a cookie); jupyter-server-proxy then starts
        # rproxy, which shows its "Starting…" page (503, reloading itself) until the demo is up
        await page.goto(str((jupyter / "demo/").with_query(token=TOKEN)))
        await page.wait_for_selector("text=rproxy demo", timeout=60_000)
        start = len(failed)
        await page.reload()
        await page.wait_for_selector("#event-log li", timeout=20_000)
        await page.wait_for_function(
            "document.getElementById('ws-status').textContent === 'connected'", timeout=20_000
        )
        await page.fill("#ws-message", "through three proxies")
        await page.click("#ws-send")
        await page.wait_for_selector(
            "#ws-log li:has-text('echo: through three proxies')", timeout=20_000
        )
        assert URL(page.url).path == f"{BASE}demo/"
    finally:
        await page.close()
    assert failed[start:] == []  # once the app is up, nothing fails
