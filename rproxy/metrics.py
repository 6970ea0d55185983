"""rproxy's own measurements: request counts, timings, bytes; Prometheus exposition.

Every request gets a ``RequestTiming`` (monotonic clock). The handler adds the time it spends
waiting on the upstream (the response headers, then each body chunk) and the bytes it relays;
``ProxyMetrics.finish`` turns that into the total duration and the proxy-added time (total minus
upstream waits), so the overhead figure counts rproxy's work, not the upstream's. Time from the
handler's start: aiohttp's parsing of the request line comes before it and is not counted.

Recording is a bisect and two additions per histogram. prometheus_client's own Histogram takes
about 1.2 us per observation (a lock and label lookups), seven times more; with five of them per
request that would be 4% of a proxied request's CPU time. So the hot path records into the small
fixed-bucket ``Histogram`` here, and ``MetricsCollector``, a prometheus_client Collector on the
app's own CollectorRegistry (no global registry), turns the numbers into metric families at scrape
time. Memory is fixed whatever the traffic; percentiles for api/status are estimated from the
buckets, by linear interpolation as Prometheus' histogram_quantile does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

logger = logging.getLogger(__name__)

# Seconds: fine below 1 ms, where the proxy's own time lives, coarse above.
BUCKETS = (
    25e-6, 50e-6, 100e-6, 150e-6, 200e-6, 300e-6, 500e-6, 750e-6,
    1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7.5e-3, 0.01, 0.015, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLASSES = tuple(f"{n}xx" for n in range(10))


class Histogram:
    """Counts of observations per bucket (upper bounds ``bounds``, then +Inf), and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) estimated from the buckets; None before any observation."""
        count = self.count
        if not count:
            return None
        rank, below = q * count, 0
        for index, n in enumerate(self.counts):
            if n and below + n >= rank:
                if index == len(self.bounds):  # in +Inf: the highest bound is all we know
                    return self.bounds[-1]
                lower = self.bounds[index - 1] if index else 0.0
                return lower + (self.bounds[index] - lower) * (rank - below) / n
            below += n
        return self.bounds[-1]

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, observations at or below it) pairs, +Inf last, as Prometheus wants."""
        pairs, total = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            pairs.append((bound, float(total)))
        return pairs


@dataclass(slots=True)
class RequestTiming:
    """What one request cost, filled in by the handler as the request goes."""

    start: float  # time.perf_counter() when the handler began
    proxied: bool = False  # forwarded to the upstream as HTTP (not the API, a redirect, a WS)
    upstream_wait: float = 0.0  # seconds spent waiting for the upstream's headers and body
    before_upstream: float = 0.0  # seconds from the start to handing the request on
    first_byte: float | None = None  # seconds from handing the request on to response headers
    bytes_in: int = 0  # request body bytes read from the client
    bytes_out: int = 0  # response body bytes written to the client
    path: str = ""


class ProxyMetrics:
    """The numbers of one rproxy process; nothing global, one per application."""

    def __init__(self, slow_request_seconds: float = 0.0) -> None:
        self.started = time.monotonic()
        self.slow_request_seconds = slow_request_seconds
        self.requests: dict[tuple[str, str], int] = {}  # (method, "2xx") -> count
        self.in_flight = 0
        self.duration = Histogram()
        self.overhead = Histogram()
        self.first_byte = Histogram()
        self.before_upstream = Histogram()
        self.connect = Histogram()
        self.loop_lag = Histogram()
        self.rewrite: dict[str, Histogram] = {}
        self.rewrite_failures: Counter[str] = Counter()
        self.bytes_in = 0
        self.bytes_out = 0
        # time.time() when an admitted client last used an app (``used``): JupyterHub activity
        self.last_activity = 0.0

    def begin(self) -> RequestTiming:
        self.in_flight += 1
        return RequestTiming(time.perf_counter())

    def finish(self, method: str, status: int, timing: RequestTiming) -> None:
        """Count a request that ended with ``status``; time it if it went to the upstream."""
        self.in_flight -= 1
        key = (method if method in _METHODS else "other", _CLASSES[status // 100 % 10])
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.bytes_in += timing.bytes_in
        self.bytes_out += timing.bytes_out
        if not timing.proxied:
            return
        total = time.perf_counter() - timing.start
        own = total - timing.upstream_wait
        self.duration.observe(total)
        self.overhead.observe(own if own > 0.0 else 0.0)
        if timing.first_byte is not None:
            self.first_byte.observe(timing.first_byte)
            self.before_upstream.observe(timing.before_upstream)
        if self.slow_request_seconds and total >= self.slow_request_seconds:
            logger.warning(
                "slow request: %s %s -> %d in %.1f ms (upstream %.1f ms, rproxy %.1f ms)",
                method,
                timing.path,
                status,
                total * 1e3,
                timing.upstream_wait * 1e3,
                own * 1e3,
            )

    def used(self) -> None:
        """An admitted client used an app now: a request or WebSocket upgrade forwarded to it, or
        a WebSocket message to or from it. rproxy's own answers (refusals, logins, redirects,
        404s, its API) are no use of the app: the hub's idle culler must not count them."""
        self.last_activity = time.time()

    def rewrote(self, seconds: dict[str, float]) -> None:
        """Record the time each body rewriter spent on one response."""
        for name, spent in seconds.items():
            histogram = self.rewrite.get(name)
            if histogram is None:
                histogram = self.rewrite[name] = Histogram()
            histogram.observe(spent)

    def latency_summary(self) -> dict[str, dict[str, float | None]]:
        """p50 / p90 / p99 in milliseconds of the proxied requests so far, per measure."""
        measures = {
            "total": self.duration,
            "overhead": self.overhead,
            "upstream_first_byte": self.first_byte,
        }
        return {
            name: {
                "count": histogram.count,
                **{
                    f"p{round(q * 100)}": None if v is None else round(v * 1e3, 3)
                    for q in (0.5, 0.9, 0.99)
                    for v in [histogram.quantile(q)]
                },
            }
            for name, histogram in measures.items()
        }


@dataclass(frozen=True)
class Gauges:
    """Numbers read at scrape time from the live application."""

    connections: Callable[[], int]
    upstream_connections: Callable[[], int]
    websockets: Callable[[], int]
    child_restarts: Callable[[], int | None]  # None: no child
    child_up: Callable[[], bool | None]


class MetricsCollector(Collector):
    """Exposes ``ProxyMetrics`` and the live ``Gauges`` as Prometheus metric families."""

    def __init__(self, metrics: ProxyMetrics, gauges: Gauges) -> None:
        self._metrics = metrics
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        m, g = self._metrics, self._gauges
        requests = CounterMetricFamily(
            "rproxy_requests", "Requests answered, by method and status class.",
            labels=["method", "status"],
        )  # fmt: skip
        for (method, status), n in sorted(m.requests.items()):
            requests.add_metric([method, status], n)
        yield requests
        yield _histogram(
            "rproxy_request_duration_seconds",
            "Total time of proxied HTTP requests, handler start to last byte written.",
            m.duration,
        )
        yield _histogram(
            "rproxy_overhead_seconds",
            "Time rproxy added to proxied HTTP requests: total minus waiting on the upstream.",
            m.overhead,
        )
        yield _histogram(
            "rproxy_before_upstream_seconds",
            "From the handler's start to handing the request to the upstream client.",
            m.before_upstream,
        )
        yield _histogram(
            "rproxy_upstream_first_byte_seconds",
            "From handing a request to the upstream client to the upstream's response headers.",
            m.first_byte,
        )
        yield _histogram(
            "rproxy_upstream_connect_seconds",
            "Opening a new connection to the upstream (pooled connections are reused).",
            m.connect,
        )
        yield _histogram(
            "rproxy_event_loop_lag_seconds",
            "How late a timer of the event loop fired (sampled 4 times a second): saturation.",
            m.loop_lag,
        )
        rewrite = HistogramMetricFamily(
            "rproxy_rewrite_seconds", "Time each body rewriter spent on a response.",
            labels=["rewriter"],
        )  # fmt: skip
        for name, histogram in sorted(m.rewrite.items()):
            rewrite.add_metric([name], histogram.cumulative(), histogram.sum)
        yield rewrite
        failures = CounterMetricFamily(
            "rproxy_rewrite_failures", "Rewriter failures, by rewriter.", labels=["rewriter"]
        )
        for name, n in sorted(m.rewrite_failures.items()):
            failures.add_metric([name], n)
        yield failures
        yield CounterMetricFamily(
            "rproxy_received_bytes", "Request body bytes read from clients.", value=m.bytes_in
        )
        yield CounterMetricFamily(
            "rproxy_sent_bytes", "Response body bytes written to clients.", value=m.bytes_out
        )
        yield GaugeMetricFamily(
            "rproxy_connections", "Open client connections.", value=g.connections()
        )
        yield GaugeMetricFamily(
            "rproxy_upstream_connections",
            "Open HTTP connections to the upstream, idle ones in the pool included.",
            value=g.upstream_connections(),
        )
        yield GaugeMetricFamily(
            "rproxy_requests_in_flight", "Requests being answered.", value=m.in_flight
        )
        yield GaugeMetricFamily(
            "rproxy_websockets", "Open proxied WebSockets.", value=g.websockets()
        )
        restarts, up = g.child_restarts(), g.child_up()
        if restarts is not None:
            yield CounterMetricFamily(
                "rproxy_child_restarts", "Restarts of the wrapped command.", value=restarts
            )
        if up is not None:
            yield GaugeMetricFamily(
                "rproxy_child_up", "1 when the wrapped command is ready.", value=int(up)
            )
        yield GaugeMetricFamily(
            "rproxy_uptime_seconds", "Seconds since rproxy started.",
            value=time.monotonic() - m.started,
        )  # fmt: skip


async def watch_loop_lag(metrics: ProxyMetrics, interval: float = 0.25) -> None:
    """Observe, forever, how late a sleep of ``interval`` wakes up: time the loop was busy."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        metrics.loop_lag.observe(max(0.0, loop.time() - due))


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.cumulative(), sum_value=histogram.sum
    )


def registry_for(metrics: ProxyMetrics, gauges: Gauges) -> CollectorRegistry:
    """A CollectorRegistry of this application alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics, gauges))
    return registry
