"""jhsingle-native-proxy's README examples, run for real: Streamlit and Voila behind rproxy.

The command lines are the README's, word for word, except that the program is named by its path
in this virtual environment (CI does not put the venv on PATH).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import aiohttp
import pytest
from support import ready, running

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _offline_streamlit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")


@pytest.mark.parametrize(
    "command_line",
    [
        pytest.param(
            "-- {bin}/streamlit hello --server.port {port} --server.headless True "
            "--server.enableCORS False",
            id="double-dash",
        ),
        pytest.param(
            "{bin}/streamlit hello {--}server.port {port} {--}server.headless True "
            "{--}server.enableCORS False --ip 127.0.0.1",
            id="placeholder-dashes",
        ),
    ],
)
async def test_streamlit_hello(command_line: str, http: aiohttp.ClientSession) -> None:
    argv = shlex.split(command_line.replace("{bin}", str(BIN)))
    async with running("--ready-timeout", "60", *argv) as (url, launcher):
        await ready(launcher)
        async with http.get(url / "") as resp:
            assert resp.status == 200
            assert "<title>Streamlit</title>" in await resp.text()
        async with http.get(url / "_stcore/health") as resp:
            assert await resp.text() == "ok"


@pytest.fixture
def presentation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    notebook = tmp_path / "Presentation.ipynb"
    notebook.write_text(
        '{"cells": [{"cell_type": "code", "execution_count": null, "metadata": {}, '
        '"outputs": [], "source": ["print(\'voila says \' + str(6 * 7))"]}], '
        '"metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", '
        '"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}'
    )
    return notebook


@pytest.mark.parametrize(
    "command_line",
    [
        pytest.param(
            "--destport 0 {bin}/voila ./Presentation.ipynb {--}port={port} {--}no-browser "
            "{--}Voila.server_url=/ {--}Voila.base_url={base_url}/ {--}debug",
            id="notebook-path",
        ),
        pytest.param(
            "--destport 0 {bin}/voila {presentation_path} {--}port={port} {--}no-browser "
            "{--}Voila.server_url=/ {--}Voila.base_url={base_url}/ {--}debug "
            "--presentation_path=./Presentation.ipynb",
            id="presentation-path",
        ),
    ],
)
async def test_voila_under_a_prefix(
    command_line: str, presentation: Path, http: aiohttp.ClientSession
) -> None:
    argv = shlex.split(command_line.replace("{bin}", str(BIN)))
    env = {"JUPYTERHUB_SERVICE_PREFIX": "/user/dan/"}
    async with running("--ready-timeout", "60", *argv, env=env) as (url, launcher):
        await ready(launcher)
        async with http.get(url / "user/dan/") as resp:
            assert resp.status == 200
            page = await resp.text()
        assert "voila says 42" in page
        stylesheet = page.split('href="/user/dan/voila/', 1)[1].split('"', 1)[0]
        async with http.get(url.with_path("/user/dan/voila/" + stylesheet, encoded=True)) as r:
            assert r.status == 200
            assert r.content_type == "text/css"
