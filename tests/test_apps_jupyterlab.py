"""JupyterLab standalone behind rproxy under /user/me/, in headless Chromium: docs/apps.md's
command line (the prefix kept, Jupyter on a private socket, Jupyter's own token on, since rproxy
alone has no login). On a hub, JupyterLab and Notebook 7 are tested in
tests/test_jupyterhub_e2e.py; this one is in the slower group.

The test opens ``/user/me/lab?token=...`` as the docs say, starts a notebook from the launcher and
runs ``1+1`` in its kernel (the kernel's WebSocket through rproxy), and checks that no request to
rproxy's origin failed or left the prefix, that the WebSockets are under it, and that rproxy logs
no warning of its own. Without the token the page is Jupyter's login form: its own auth is on.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest
from jupyter_pages import run_one_plus_one
from page_traffic import watched_page
from playwright.async_api import Browser
from support import ready, rproxy_warnings, running
from yarl import URL

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PREFIX = "/user/me/"


@pytest.mark.timeout(240)
async def test_jupyterlab_standalone_with_its_token(
    browser: Browser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # JupyterLab's build-check dialog (an installed package brings an old-style extension) and
    # its files kept out of the home directory
    labconfig = tmp_path / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text('{"buildCheck": false, "buildAvailable": false}')
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.chdir(tmp_path)
    token = secrets.token_hex(16)
    argv = ["--prefix", PREFIX, "--no-strip-prefix", "--unix-socket", "--ready-timeout", "60",
            "--", str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root",
            "--ServerApp.sock={unix_socket}", "--ServerApp.base_url={base_url}/",
            f"--IdentityProvider.token={token}",
            "--ServerApp.allow_remote_access=True"]  # fmt: skip
    async with running(*argv) as (url, launcher):
        await ready(launcher)
        async with watched_page(browser, url.origin()) as (page, traffic):
            await page.goto(str(url.with_path(f"{PREFIX}lab")))
            await page.wait_for_selector("text=Password or token", timeout=30_000)  # its login
            await page.goto(str(url.with_path(f"{PREFIX}lab").with_query(token=token)))
            await page.locator(".jp-LauncherCard").first.click(timeout=60_000)  # a new notebook
            assert await run_one_plus_one(page) == "2"
            await page.screenshot(path=str(tmp_path / "jupyterlab.png"))
        assert rproxy_warnings(caplog) == []
    traffic.check(PREFIX)
    kernels = [s for s in traffic.sockets if "/api/kernels/" in URL(s.url).path]
    assert kernels, traffic.sockets
