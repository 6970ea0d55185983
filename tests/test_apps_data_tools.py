"""Datasette, Shiny for Python, TensorBoard and MLflow in headless Chromium through rproxy under
/user/me/, each started by rproxy with docs/apps.md's command line (the slower group: the apps live
in their own environment, scripts/setup-slow-apps.sh's .cache/slow-apps).

None needs a prefix option to work in the browser, and each runs with the prefix stripped. For
each, the test proves that the UI renders under the prefix, that no same-origin request fails or
leaves the prefix and none goes to another origin, that the app's WebSocket (Shiny's) connects under
the prefix, and that one interaction works end to end: Datasette runs SQL typed into its form and
its "Next page" link carries the prefix once (its ``base_url`` with the prefix stripped); Shiny's
server answers a changed input; TensorBoard draws the runs of an event log; MLflow, reached by a
host name as a hub user reaches it, starts on that first request with the name in its
``--allowed-hosts`` and creates an experiment from its UI (a POST its origin check lets through),
which its REST API then shows through rproxy.

The page's own icon request is not reported by Playwright; a root /favicon.ico would be the one
request allowed outside the prefix (the hub answers it). rproxy logs no warning of its own for
any of them.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest
from page_traffic import watched_page
from playwright.async_api import (
    Browser,
    expect,
)
from support import (
    HUB_HOST,
    SLOW_APPS,
    fruit_db,
    ready,
    rproxy_warnings,
    running,
    supervisor_of,
)
from yarl import URL

from rproxy.supervisor import ChildState

pytestmark = pytest.mark.slow

APPS = Path(__file__).parent / "apps"
PREFIX = "/user/me/"
HUB = HUB_HOST  # the hub_browser maps it to 127.0.0.1
TIMEOUT = 30_000  # milliseconds, for any one thing a page should show


async def test_datasette_runs_sql_and_pages_under_the_prefix(
    browser: Browser, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = fruit_db(tmp_path / "fruit.db")
    command = [str(SLOW_APPS / "datasette"), "serve", str(database), "--uds", "{unix_socket}",
               "--setting", "base_url", "{base_url}/"]  # fmt: skip
    async with running("--prefix", PREFIX, "--unix-socket", "--", *command) as (url, launcher):
        await ready(launcher)
        base = str(url.with_path(PREFIX))
        async with watched_page(browser, url.origin()) as (page, traffic):
            await page.goto(base)
            await expect(page.get_by_text("4 rows in 1 table")).to_be_visible(timeout=TIMEOUT)
            await page.get_by_role("link", name="fruit", exact=True).first.click()
            await expect(page).to_have_url(f"{base}fruit", timeout=TIMEOUT)
            # The query goes into the CodeMirror editor as a user types it, then the form's button.
            await page.locator(".CodeMirror").click()
            await page.keyboard.press("Control+A")
            await page.keyboard.type("select name, colour from fruit where colour = 'red'")
            await page.get_by_role("button", name="Run SQL").click()
            await expect(page).to_have_url(re.compile(re.escape(f"{base}fruit?sql=")))
            cells = page.locator("table.rows-and-columns tbody td")
            await expect(cells).to_have_text(["apple", "red", "cherry", "red"], timeout=TIMEOUT)

            await page.goto(f"{base}fruit/fruit?_size=1")
            await expect(cells.first).to_have_text("apple", timeout=TIMEOUT)
            next_page = page.get_by_role("link", name="Next page")
            href = await next_page.get_attribute("href")
            assert href is not None
            assert URL(href).path == f"{PREFIX}fruit/fruit", href  # not /user/me/user/me/...
            await next_page.click()
            await expect(cells.first).to_have_text("banana", timeout=TIMEOUT)
            assert URL(page.url).path == f"{PREFIX}fruit/fruit"
            assert URL(page.url).query["_next"] == "apple"
        assert rproxy_warnings(caplog) == []
    urls = traffic.check(PREFIX)
    assert any(URL(u).path.startswith(f"{PREFIX}-/static/codemirror") for u in urls), urls
    assert traffic.sockets == []  # Datasette has no WebSocket


async def test_shiny_answers_an_input_over_its_websocket(
    browser: Browser, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = APPS / "shiny_app.py"
    command = [str(SLOW_APPS / "shiny"), "run", str(app), "--host", "127.0.0.1", "--port", "{port}"]
    async with running("--prefix", PREFIX, "--", *command) as (url, launcher):
        await ready(launcher)
        async with watched_page(browser, url.origin()) as (page, traffic):
            await page.goto(str(url.with_path(PREFIX)))
            await expect(page.get_by_role("heading", name="rproxy shiny test")).to_be_visible(
                timeout=TIMEOUT
            )
            greeting = page.locator("#greeting")
            # The server computes the output from the input: both ways over the WebSocket.
            await expect(greeting).to_have_text("Hello, world! (from shiny)", timeout=TIMEOUT)
            await page.locator("#name").fill("Ann")
            await expect(greeting).to_have_text("Hello, Ann! (from shiny)", timeout=TIMEOUT)
            [socket] = traffic.sockets
            assert URL(socket.url).path == f"{PREFIX}websocket/"
            assert not socket.is_closed()
            assert traffic.frames[socket.url] >= 2  # the first output, then the changed one
        assert rproxy_warnings(caplog) == []
    urls = traffic.check(PREFIX)
    assert any(URL(u).path.startswith(f"{PREFIX}lib/shiny") for u in urls), urls


async def test_tensorboard_draws_the_runs_of_an_event_log(
    browser: Browser, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logs = tmp_path / "logs"
    writer = await asyncio.create_subprocess_exec(
        str(SLOW_APPS / "python"), str(APPS / "tensorboard_events.py"), str(logs)
    )
    assert await asyncio.wait_for(writer.wait(), timeout=60) == 0
    command = [str(SLOW_APPS / "tensorboard"), "--logdir", str(logs), "--host", "127.0.0.1",
               "--port", "{port}", "--load_fast=false"]  # fmt: skip
    async with running("--prefix", PREFIX, "--", *command) as (url, launcher):
        await ready(launcher)
        async with watched_page(browser, url.origin()) as (page, traffic):
            await page.goto(str(url.with_path(PREFIX)))
            runs = page.locator("runs-selector tb-data-table-content-row")
            await expect(runs).to_have_text(["alpha-run", "beta-run"], timeout=TIMEOUT)
            card = page.locator("scalar-card", has_text="loss")
            await expect(card.locator("line-chart")).to_be_visible(timeout=TIMEOUT)
            # Under the chart, each run's last point: step 19, loss 1/20 and 2/20.
            await expect(card.locator("tb-data-table-content-row")).to_have_text(
                [re.compile(r"alpha-run\s*\S+\s*0\.05\s*19\s"),
                 re.compile(r"beta-run\s*\S+\s*0\.1\s*19\s")],
                timeout=TIMEOUT,
            )  # fmt: skip
        assert rproxy_warnings(caplog) == []
    urls = traffic.check(PREFIX)
    assert any(URL(u).path.endswith("/plugin/timeseries/timeSeries") for u in urls), urls
    assert traffic.sockets == []  # TensorBoard has no WebSocket


@pytest.mark.timeout(240)  # MLflow took up to 65 s to start here, and may take 10 s to stop
async def test_mlflow_by_a_host_name_creates_an_experiment(
    hub_browser: Browser, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    command = ["env", "MLFLOW_DISABLE_TELEMETRY=true",
               str(SLOW_APPS / "mlflow"), "server",
               "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
               "--artifacts-destination", str(tmp_path / "mlartifacts"), "--workers", "1",
               "--uvicorn-opts", "--uds {unix_socket}",
               "--allowed-hosts", "{origin_host}",
               "--cors-allowed-origins", "http://{origin_host},https://{origin_host}"]  # fmt: skip
    options = ["--prefix", PREFIX, "--unix-socket", "--ready-timeout", "120",
               "--ready-check-path", "/health"]  # fmt: skip
    async with running(*options, "--", *command) as (url, launcher):
        assert launcher.supervisor is None  # {origin_host}: it starts on the first request
        site = URL.build(scheme="http", host=HUB, port=url.port)
        base = str(site.with_path(PREFIX))
        async with watched_page(hub_browser, site) as (page, traffic):
            response = await page.goto(base)
            assert response is not None
            assert response.status == 503  # rproxy's "Starting…" page, which reloads itself
            supervisor = await supervisor_of(launcher)
            assert f"{HUB}:{url.port}" in supervisor.spec.argv  # --allowed-hosts, from Host
            state = await asyncio.wait_for(
                supervisor.wait_for(ChildState.READY, ChildState.FAILED), timeout=150
            )
            assert state is ChildState.READY, supervisor.output_tail()
            await expect(page.get_by_text("Welcome to MLflow")).to_be_visible(timeout=TIMEOUT)

            await page.get_by_role("link", name="Experiments").first.click()
            await expect(page).to_have_url(f"{base}#/experiments", timeout=TIMEOUT)
            await expect(page.get_by_role("link", name="Default")).to_be_visible(timeout=TIMEOUT)
            await page.get_by_test_id("create-experiment-button").click()
            dialog = page.get_by_role("dialog")
            await dialog.locator("#experimentName").fill("made-in-the-browser")
            await dialog.get_by_role("button", name="Create").click()
            # MLflow opens the new experiment's page.
            await expect(page).to_have_url(
                re.compile(re.escape(f"{base}#/experiments/") + r"\d+/"), timeout=TIMEOUT
            )
            experiment = page.url.split("#/experiments/")[1].split("/")[0]
        # The same experiment through MLflow's REST API, reached through rproxy by the hub's name.
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.get(
                url.with_path(f"{PREFIX}api/2.0/mlflow/experiments/get-by-name"),
                params={"experiment_name": "made-in-the-browser"},
                headers={"Host": f"{HUB}:{url.port}"},
            ) as answer,
        ):
            assert answer.status == 200
            assert (await answer.json())["experiment"]["experiment_id"] == experiment
        assert rproxy_warnings(caplog) == []
    # MLflow's own answers, as without rproxy: its UI asks who the user is (there is no login
    # without --app-name basic-auth), and whether the new name is taken before it creates it.
    app_answers = {
        (503, "GET", PREFIX),  # rproxy's "Starting…" page until MLflow is ready
        (404, "GET", f"{PREFIX}ajax-api/2.0/mlflow/users/current"),
        (404, "GET", f"{PREFIX}ajax-api/2.0/mlflow/experiments/get-by-name"),
    }
    traffic.check(PREFIX, app_answers)
    creations = [r for r in traffic.responses if r.url.endswith("/experiments/create")]
    assert [(r.request.method, r.status) for r in creations] == [("POST", 200)]
