"""Latency tracking and api/metrics: histograms, counters that move with traffic, true overhead."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from support import StartProxy, StartUpstream
from yarl import URL

from rproxy.metrics import BUCKETS, Histogram

DELAY = 0.1  # what the upstream's /slow route waits, before its headers and inside its body
PAGE = b"<!DOCTYPE html><html><body>" + b'<a href="/x">x</a>' * 50 + b"</body></html>"


def _upstream_app() -> web.Application:
    async def data(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"d" * 1000, content_type="application/octet-stream")

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(DELAY)  # the upstream's own time, which rproxy must not claim
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first half ")
        await asyncio.sleep(DELAY)
        await response.write_eof(b"second half")
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for msg in socket:
            await socket.send_str(msg.data)
        return socket

    app = web.Application()
    app.router.add_route("*", "/data", data)
    app.router.add_get("/page.html", page)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws)
    return app


@pytest.fixture
async def proxy(start_upstream: StartUpstream, start_proxy: StartProxy) -> URL:
    return await start_proxy(await start_upstream(_upstream_app()), prefix="/p/")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(http: aiohttp.ClientSession, proxy: URL) -> Samples:
    async with http.get(proxy / "p/api/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_traffic_passes(proxy: URL, http: aiohttp.ClientSession) -> None:
    before = await _scrape(http, proxy)
    for _ in range(5):
        async with http.get(proxy / "p/data") as response:
            assert len(await response.read()) == 1000
    async with http.post(proxy / "p/data", data=b"u" * 3000) as response:
        assert response.status == 200
    async with http.get(proxy / "p/page.html") as response:
        assert b"/p/x" in await response.read()
    async with http.get(proxy / "elsewhere") as response:
        assert response.status == 404
    async with http.ws_connect(proxy / "p/ws") as socket:
        during = await _scrape(http, proxy)
        await socket.send_str("hi")
        assert await socket.receive_str() == "hi"
    after = await _scrape(http, proxy)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("rproxy_requests_total", method="GET", status="2xx") == 5 + 1 + 2  # 2 scrapes
    assert moved("rproxy_requests_total", method="POST", status="2xx") == 1
    assert moved("rproxy_requests_total", method="GET", status="4xx") == 1
    assert moved("rproxy_requests_total", method="GET", status="1xx") == 1  # the WebSocket
    proxied = 5 + 1 + 1
    for histogram in ("rproxy_request_duration_seconds", "rproxy_overhead_seconds"):
        assert moved(histogram + "_count") == proxied
        assert moved(histogram + "_bucket", le="+Inf") == proxied
    assert moved("rproxy_upstream_first_byte_seconds_count") == proxied
    assert moved("rproxy_before_upstream_seconds_count") == proxied
    assert 0 < moved("rproxy_before_upstream_seconds_sum") < moved("rproxy_overhead_seconds_sum")
    assert 0 < moved("rproxy_overhead_seconds_sum") <= moved("rproxy_request_duration_seconds_sum")
    # connections are opened, then reused: far fewer opens than requests
    assert 1 <= _value(after, "rproxy_upstream_connect_seconds_count") < proxied
    assert moved("rproxy_rewrite_seconds_count", rewriter="html") == 1
    assert moved("rproxy_rewrite_seconds_sum", rewriter="html") > 0
    assert moved("rproxy_received_bytes_total") == 3000
    assert moved("rproxy_sent_bytes_total") >= 6 * 1000 + len(PAGE)
    assert _value(during, "rproxy_websockets") == 1
    assert _value(after, "rproxy_websockets") == 0
    assert _value(during, "rproxy_connections") >= 1
    assert _value(after, "rproxy_upstream_connections") >= 1, "the keep-alive pool holds one"
    assert _value(after, "rproxy_requests_in_flight") == 1  # the scrape itself
    assert ("rproxy_child_restarts_total", ()) not in after  # no child: no child metrics
    assert _value(after, "rproxy_uptime_seconds") > 0


async def test_the_overhead_leaves_out_the_upstreams_own_time(
    proxy: URL, http: aiohttp.ClientSession
) -> None:
    before = await _scrape(http, proxy)
    for _ in range(2):
        async with http.get(proxy / "p/slow") as response:
            assert await response.read() == b"first half second half"
    after = await _scrape(http, proxy)

    def moved(name: str) -> float:
        return _value(after, name) - _value(before, name)

    total = moved("rproxy_request_duration_seconds_sum")
    overhead = moved("rproxy_overhead_seconds_sum")
    # Each request waited DELAY for the headers and DELAY inside the body: not rproxy's time.
    assert total >= 2 * 2 * DELAY
    assert 0 < overhead <= total - 2 * 2 * DELAY
    assert moved("rproxy_upstream_first_byte_seconds_sum") >= 2 * DELAY


async def test_server_timing_reports_upstream_and_own_time(
    start_upstream: StartUpstream, start_proxy: StartProxy, http: aiohttp.ClientSession
) -> None:
    upstream = await start_upstream(_upstream_app())
    timed = await start_proxy(upstream, server_timing=True)
    async with http.get(timed / "slow") as response:
        header = response.headers["Server-Timing"]
    found = dict(re.findall(r"(\w+);dur=([\d.]+)", header))
    assert set(found) == {"upstream", "rproxy"}
    assert float(found["upstream"]) >= DELAY * 1000
    assert float(found["rproxy"]) >= 0
    plain = await start_proxy(upstream)
    async with http.get(plain / "slow") as response:
        assert "Server-Timing" not in response.headers


async def test_slow_requests_are_logged_above_the_threshold(
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "rproxy.metrics")
    proxy = await start_proxy(await start_upstream(_upstream_app()), slow_request_ms=DELAY * 1000)
    async with http.get(proxy / "slow") as response:
        await response.read()
    async with http.get(proxy / "data") as response:
        await response.read()
    slow = [r.getMessage() for r in caplog.records if "slow request" in r.getMessage()]
    assert len(slow) == 1
    assert re.fullmatch(
        r"slow request: GET /slow -> 200 in [\d.]+ ms \(upstream [\d.]+ ms, rproxy [\d.]+ ms\)",
        slow[0],
    )


async def test_openmetrics_when_the_scraper_asks_for_it(
    proxy: URL, http: aiohttp.ClientSession
) -> None:
    accept = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with http.get(proxy / "p/api/metrics", headers={"Accept": accept}) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await response.text()
    assert text.endswith("# EOF\n")
    assert "rproxy_overhead_seconds_bucket" in text


def test_a_histogram_keeps_fixed_memory_and_estimates_quantiles() -> None:
    histogram = Histogram()
    assert histogram.quantile(0.5) is None
    for i in range(10_000):
        histogram.observe(0.001 + (i % 100) * 1e-6)  # 1.000 .. 1.099 ms
    histogram.observe(1000.0)  # beyond the last bound: +Inf
    assert len(histogram.counts) == len(BUCKETS) + 1
    assert histogram.count == 10_001
    p50 = histogram.quantile(0.5)
    assert p50 is not None
    assert 0.00075 < p50 <= 0.0015  # within the bucket that holds every small observation
    assert histogram.quantile(1.0) == BUCKETS[-1]
    cumulative = histogram.cumulative()
    assert cumulative[-1] == ("+Inf", 10_001.0)
    assert [n for _, n in cumulative] == sorted(n for _, n in cumulative)


async def test_a_busy_event_loop_shows_as_loop_lag(proxy: URL, http: aiohttp.ClientSession) -> None:
    # rproxy runs in this test's event loop: blocking it is what a CPU-bound rewrite would do.
    time.sleep(0.6)  # noqa: ASYNC251 (the point of the test)
    # The overdue timer fires in the loop's next turn, long before a scrape has been answered.
    samples = await _scrape(http, proxy)
    count = _value(samples, "rproxy_event_loop_lag_seconds_count")
    assert count > _value(samples, "rproxy_event_loop_lag_seconds_bucket", le="0.25")
    assert _value(samples, "rproxy_event_loop_lag_seconds_sum") >= 0.35
