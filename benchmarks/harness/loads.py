"""The scenarios and one measurement: load from wrk or ws_client.py, CPU time from /proc.

A measurement runs the load generator pinned to the load CPU for a fixed time, reads the target's
CPU time (utime + stime of its process tree, or of the process alone for jhsingle) just before and
just after, and returns the rate, p50 / p99 latency, operations completed, errors, and the target's
CPU microseconds per operation. Every subprocess has a timeout.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

from harness.procs import cpu_seconds, cpu_ticks, pinned
from harness.targets import BENCH, Endpoint

Kind = Literal["http", "ws_rtt", "ws_stream"]
Unit = Literal["req/s", "msg/s", "MB/s"]


class MeasureError(RuntimeError):
    """A load generator failed or printed something it should not have."""


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    kind: Kind
    unit: Unit
    connections: int
    path: str = "/ws"
    size: int = 100
    window: int = 1


SCENARIOS = (
    Scenario("get_1k_c1", "1 KiB GET c=1", "http", "req/s", 1, "/1k.bin"),
    Scenario("get_1k_c32", "1 KiB GET c=32", "http", "req/s", 32, "/1k.bin"),
    Scenario("get_1m_c8", "1 MiB GET c=8", "http", "req/s", 8, "/1m.bin"),
    Scenario("get_html_c8", "html 100 KiB GET c=8 (rproxy rewrites)", "http", "req/s", 8,
             "/page.html"),
    Scenario("ws_rtt", "WS round trip 100 B", "ws_rtt", "msg/s", 1),
    Scenario("ws_100b_x8", "WS 100 B x8 conns, 16 in flight", "ws_stream", "msg/s", 8, window=16),
    Scenario("ws_64k_x8", "WS 64 KiB x8 conns, 2 in flight", "ws_stream", "MB/s", 8, size=65536,
             window=2),
)  # fmt: skip


@dataclass(frozen=True)
class Measurement:
    rate: float
    p50_us: float
    p99_us: float
    ops: int
    errors: int
    cpu_us_per_op: float | None


@dataclass(frozen=True)
class _Load:
    rate: float
    p50_us: float
    p99_us: float
    ops: int
    errors: int


_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def parse_wrk(text: str) -> _Load:
    """Requests/sec, the 50% and 99% lines of 'Latency Distribution', requests and errors."""
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)\s*$", text, re.MULTILINE))
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    done = re.search(r"^\s+(\d+) requests in", text, re.MULTILINE)
    if rate is None or done is None or set(percentiles) != {"50", "99"}:
        raise MeasureError(f"cannot parse wrk output: {text.strip()[-300:]!r}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return _Load(
        rate=float(rate.group(1)),
        p50_us=_to_us(percentiles["50"]),
        p99_us=_to_us(percentiles["99"]),
        ops=int(done.group(1)),
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
    )


def _to_us(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_US[unit]


def _run(argv: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise MeasureError(f"{argv[0]} timed out after {timeout:.0f} s") from error
    if done.returncode != 0:
        raise MeasureError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout


def _wrk(url: str, scenario: Scenario, seconds: int, cpu: int | None) -> _Load:
    argv = [
        "wrk", "-t1", f"-c{scenario.connections}", f"-d{seconds}s", "--timeout", "10s",
        "--latency", url + scenario.path,
    ]  # fmt: skip
    return parse_wrk(_run(pinned(argv, cpu), timeout=seconds + 30))


def _ws(url: str, scenario: Scenario, seconds: float, cpu: int | None) -> _Load:
    argv = [
        sys.executable, str(BENCH / "ws_client.py"), "--url", "ws" + url[4:] + scenario.path,
        "--mode", "rtt" if scenario.kind == "ws_rtt" else "stream", "--duration", str(seconds),
        "--size", str(scenario.size), "--connections", str(scenario.connections),
        "--window", str(scenario.window),
    ]  # fmt: skip
    out = json.loads(_run(pinned(argv, cpu), timeout=seconds + 45).strip().splitlines()[-1])
    per_second = out["messages"] / out["seconds"]
    if scenario.unit == "MB/s":
        per_second = out["bytes"] / out["seconds"] / 1e6
    return _Load(per_second, out["p50_us"], out["p99_us"], int(out["messages"]), 0)


def load(endpoint: Endpoint, scenario: Scenario, seconds: int, cpu: int | None) -> _Load:
    if scenario.kind == "http":
        return _wrk(endpoint.url, scenario, seconds, cpu)
    return _ws(endpoint.url, scenario, seconds, cpu)


def measure(endpoint: Endpoint, scenario: Scenario, seconds: int, cpu: int | None) -> Measurement:
    """One timed run of ``scenario`` against ``endpoint``, with the target's CPU time per op."""
    before = cpu_ticks(endpoint.pid, descendants=endpoint.descendants) if endpoint.pid else {}
    result = load(endpoint, scenario, seconds, cpu)
    cpu_us = None
    if endpoint.pid:
        after = cpu_ticks(endpoint.pid, descendants=endpoint.descendants)
        cpu_us = cpu_seconds(before, after) * 1e6 / max(1, result.ops)
    return Measurement(result.rate, result.p50_us, result.p99_us, result.ops, result.errors, cpu_us)
