"""code-server (VS Code in the browser) behind rproxy under /user/me/, in headless Chromium reaching
it by a host name as a hub user's browser does, started by rproxy with docs/apps.md's command line
(the slower group: scripts/setup-code-server.sh installs code-server and the Node major it needs in
.cache/code-server).

code-server needs no prefix option: it serves at / and every URL it writes is relative (its page
computes its base from its own address), so the prefix is stripped. It cannot keep the prefix
(``--no-strip-prefix``): it has no base-path option and answers 404. It listens on rproxy's
private socket (``--socket {unix_socket}``) with its own login off (``--auth none``): rproxy is the
door. rproxy runs only the headers and HTML rewriters: code-server's CSS needs no rewriting, and
the CSS rewriter holds rproxy for seconds on its 1.6 MB workbench.css (the test checks that the
stylesheet arrives as code-server wrote it).

The test proves that the workbench renders under the prefix, that no same-origin request fails
but the two that fail without rproxy too (vsda, Microsoft's closed-source module, is not in
code-server), that no request leaves the prefix and none goes to another origin but code-server's
extension gallery (open-vsx.org), that its WebSockets connect under the prefix and carry messages,
and that two round trips reach the server: a file opened from the explorer shows its content, a
line typed into it is saved to disk, and a command typed into the integrated terminal (a pty on
the server) writes a file.

Not tested, because it needs a secure context (HTTPS or localhost), which the host name over plain
HTTP is not: webviews (Markdown preview, extension views) and the service worker. Behind a hub
served over HTTPS they work (checked by hand with Chromium's
``--unsafely-treat-insecure-origin-as-secure``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from page_traffic import watched_page
from playwright.async_api import (
    Browser,
    expect,
)
from support import CODE_SERVER_ENTRY, CODE_SERVER_NODE, HUB_HOST, ready, rproxy_warnings, running
from yarl import URL

pytestmark = pytest.mark.slow

NODE = CODE_SERVER_NODE
ENTRY = CODE_SERVER_ENTRY
WORKBENCH_CSS = ENTRY.parents[2] / "lib/vscode/out/vs/code/browser/workbench/workbench.css"

PREFIX = "/user/me/"
HUB = HUB_HOST  # the hub_browser maps it to 127.0.0.1
TIMEOUT = 60_000  # milliseconds: the workbench parses 19 MB of JavaScript before it shows
GALLERY = "open-vsx.org"  # code-server's extension gallery, which the page asks on its own
# code-server's own 404s, the same without rproxy: vsda is not shipped in code-server
VSDA = {"vsda.js", "vsda_bg.wasm"}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The folder code-server opens; code-server's config, data and extensions kept out of the
    home directory (it writes a config file with a generated password on its first start), and
    the sockets VS Code leaves behind when stopped (vscode-ipc-*.sock, vscode-git-*.sock) out of
    /tmp, in a directory short enough for a socket's path (tmp_path is too long)."""
    if not ENTRY.is_file():
        pytest.fail("code-server is not installed: run scripts/setup-code-server.sh")
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    sockets = tempfile.mkdtemp(prefix="cs-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", sockets)  # VS Code's IPC sockets
    monkeypatch.setenv("TMPDIR", sockets)  # the git extension's
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "hello.py").write_text('print("hello from rproxy")\n')
    yield folder
    shutil.rmtree(sockets, ignore_errors=True)


async def _until(condition: Callable[[], bool], seconds: float = 10) -> bool:
    """Poll ``condition()`` until it is true or ``seconds`` pass."""
    for _ in range(int(seconds * 5)):
        if condition():
            return True
        await asyncio.sleep(0.2)
    return bool(condition())


@pytest.mark.timeout(240)  # the workbench takes 10 to 30 s to show on a busy 2-core machine
async def test_code_server_edits_a_file_and_runs_a_terminal_by_a_host_name(
    hub_browser: Browser, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    command = [str(NODE), str(ENTRY), "--auth", "none", "--socket", "{unix_socket}",
               "--disable-telemetry", "--disable-update-check",
               "--abs-proxy-base-path", "{base_url}", str(folder)]  # fmt: skip
    options = ["--prefix", PREFIX, "--unix-socket", "--rewriters", "headers,html",
               "--ready-timeout", "60"]  # fmt: skip
    async with running(*options, "--", *command) as (url, launcher):
        await ready(launcher)
        site = URL.build(scheme="http", host=HUB, port=url.port)
        async with watched_page(hub_browser, site, viewport={"width": 1400, "height": 900}) as (
            page,
            traffic,
        ):
            await page.goto(str(site.with_path(PREFIX)))
            # code-server sends / to ./?folder=<the folder it opened>: relative, so under the prefix
            await expect(page).to_have_url(
                str(site.with_path(PREFIX).with_query(folder=str(folder))), timeout=TIMEOUT
            )
            explorer = page.locator(".explorer-folders-view .monaco-list-row")
            await expect(explorer.filter(has_text="hello.py")).to_be_visible(timeout=TIMEOUT)

            # A file opened from the explorer: its content comes from the server over the WebSocket.
            await explorer.filter(has_text="hello.py").click()
            lines = page.locator(".part.editor .monaco-editor .view-lines")  # not the chat's input
            await expect(lines).to_contain_text("hello from rproxy", timeout=TIMEOUT)
            # A line typed into it and saved: the file on disk changes.
            await lines.click()
            await page.keyboard.press("Control+End")
            await page.keyboard.press("Enter")
            await page.keyboard.type("# typed through rproxy")
            await page.keyboard.press("Control+S")
            hello = folder / "hello.py"
            assert await _until(lambda: "# typed through rproxy" in hello.read_text()), hello

            # The integrated terminal: a shell on the server (node-pty) writes a file. The folder is
            # new to VS Code, so it is in Restricted Mode (Workspace Trust) and asks first. The
            # first keys can arrive before the shell's prompt and be lost: type again until the
            # file is there.
            await page.keyboard.press("Control+Backquote")
            await page.get_by_role("button", name="Trust Folder & Continue").click(timeout=TIMEOUT)
            terminal = page.locator(".terminal-wrapper .xterm")
            await terminal.click(timeout=TIMEOUT)
            written = folder / "from-the-terminal.txt"
            for _ in range(5):
                await page.keyboard.press("Control+C")  # a fresh prompt, whatever came before
                await page.keyboard.type(f"echo terminal-ok > {written}\n", delay=20)
                if await _until(lambda: written.is_file() and written.read_text() != "", 5):
                    break
            assert written.read_text() == "terminal-ok\n"
            [css] = [r for r in traffic.responses if URL(r.url).name == "workbench.css"]
            css_body = await css.body()
        assert rproxy_warnings(caplog) == []

    # code-server's own 404s (vsda), and its extension gallery, are the same without rproxy
    vsda = [e for e in traffic.errors() if e[0] == 404 and URL(e[2]).name in VSDA]
    traffic.check(PREFIX, expected=vsda, other_hosts={GALLERY})
    # Two WebSockets (the workbench's management connection and its extension host's), both
    # under the prefix and busy.
    assert len(traffic.sockets) == 2, traffic.sockets
    for socket in traffic.sockets:
        assert URL(socket.url).path.startswith(PREFIX), socket.url
        assert traffic.frames[socket.url] > 10, traffic.frames
    # The stylesheet arrives as code-server wrote it: the CSS rewriter is not in the chain.
    assert css_body == WORKBENCH_CSS.read_bytes()
