"""Turns the measurements into medians, the printed tables and the pass/fail targets.

Each cell is the median over the interleaved repeats of one (target, scenario). "added" is a
target's median latency minus the direct one's. The checks compare medians only; a check whose
target was skipped is reported as SKIP with the reason, never as a pass.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from harness.loads import Measurement, Scenario
from harness.targets import HTML_SIZE

Cell = tuple[str, str]  # (target, scenario key)


@dataclass(frozen=True)
class Summary:
    rate: float
    p50_us: float
    p99_us: float
    cpu_us_per_op: float | None
    errors: int
    runs: int
    added_p50_us: float | None = None
    added_p99_us: float | None = None


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["PASS", "FAIL", "SKIP"]
    detail: str


def summarize(results: dict[Cell, list[Measurement]]) -> dict[Cell, Summary]:
    plain = {cell: _median(runs) for cell, runs in results.items() if runs}
    out = {}
    for (target, key), summary in plain.items():
        direct = plain.get(("direct", key))
        out[target, key] = Summary(
            **{
                **asdict(summary),
                "added_p50_us": summary.p50_us - direct.p50_us if direct else None,
                "added_p99_us": summary.p99_us - direct.p99_us if direct else None,
            }
        )
    return out


def _median(runs: list[Measurement]) -> Summary:
    cpu = [r.cpu_us_per_op for r in runs if r.cpu_us_per_op is not None]
    return Summary(
        rate=statistics.median(r.rate for r in runs),
        p50_us=statistics.median(r.p50_us for r in runs),
        p99_us=statistics.median(r.p99_us for r in runs),
        cpu_us_per_op=statistics.median(cpu) if cpu else None,
        errors=sum(r.errors for r in runs),
        runs=len(runs),
    )


def _us(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value / 1000:.2f}ms"
    return f"{value:.0f}us"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


_TABLES: tuple[tuple[str, Callable[[Summary], str]], ...] = (
    ("throughput (! = some requests failed)", lambda s: _rate(s.rate) + "!" * (s.errors > 0)),
    ("latency p50", lambda s: _us(s.p50_us)),
    ("latency p99", lambda s: _us(s.p99_us)),
    ("added p50 vs direct", lambda s: _us(s.added_p50_us)),
    ("added p99 vs direct", lambda s: _us(s.added_p99_us)),
    ("proxy CPU per request or message, us", lambda s: _cpu(s.cpu_us_per_op)),
)


def render(
    summaries: dict[Cell, Summary], scenarios: Sequence[Scenario], targets: Sequence[str]
) -> str:
    """One table per metric: rows are scenarios, columns are targets."""
    labels = {s.key: f"{s.label} [{s.unit}]" for s in scenarios}
    label_width = max(len(text) for text in [*labels.values(), *(t for t, _ in _TABLES)]) + 1
    widths = [max(11, len(t) + 2) for t in targets]
    lines = []
    for index, (title, cell) in enumerate(_TABLES):
        header = "".join(t.rjust(w) for t, w in zip(targets, widths, strict=True))
        lines += ["", title.ljust(label_width) + header]
        for scenario in scenarios:
            row = (labels[scenario.key] if index == 0 else scenario.label).ljust(label_width)
            for target, width in zip(targets, widths, strict=True):
                summary = summaries.get((target, scenario.key))
                text = "n/a" if summary is None else cell(summary)
                row += ("-" if target == "direct" and title.startswith("added") else text).rjust(
                    width
                )
            lines.append(row)
    return "\n".join(lines)


def _get(summaries: dict[Cell, Summary], target: str, key: str) -> Summary:
    summary = summaries.get((target, key))
    if summary is None:
        raise LookupError(f"no result for {target} / {key}")
    return summary


def _ratio_check(
    summaries: dict[Cell, Summary], key: str, other: str, factor: float, what: str
) -> Check:
    name = f"{what}: rproxy >= {factor:g}x {other}"
    try:
        ours, theirs = _get(summaries, "rproxy", key).rate, _get(summaries, other, key).rate
    except LookupError as error:
        return Check(name, "SKIP", str(error))
    ratio = ours / theirs if theirs else math.inf
    detail = f"rproxy {_rate(ours)} vs {other} {_rate(theirs)}: {ratio:.2f}x"
    return Check(name, "PASS" if ratio >= factor else "FAIL", detail)


def _cpu_check(summaries: dict[Cell, Summary]) -> Check:
    name = "CPU per 1 KiB request (c=32): rproxy <= minimal"
    try:
        ours = _get(summaries, "rproxy", "get_1k_c32").cpu_us_per_op
        theirs = _get(summaries, "minimal", "get_1k_c32").cpu_us_per_op
    except LookupError as error:
        return Check(name, "SKIP", str(error))
    if ours is None or theirs is None:
        return Check(name, "SKIP", "no CPU time measured")
    detail = f"rproxy {ours:.1f} us vs minimal {theirs:.1f} us"
    return Check(name, "PASS" if ours <= theirs else "FAIL", detail)


def _ws_check(summaries: dict[Cell, Summary]) -> Check:
    name = "WebSocket round trip added p50: rproxy <= chp"
    try:
        ours = _get(summaries, "rproxy", "ws_rtt").added_p50_us
        theirs = _get(summaries, "chp", "ws_rtt").added_p50_us
    except LookupError as error:
        return Check(name, "SKIP", str(error))
    if ours is None or theirs is None:
        return Check(name, "SKIP", "no direct result to compare with")
    detail = f"rproxy +{_us(ours)} vs chp +{_us(theirs)}"
    return Check(name, "PASS" if ours <= theirs else "FAIL", detail)


def _tail_check(summaries: dict[Cell, Summary]) -> Check:
    name = "1 KiB GET c=1 added p99: rproxy < 5 ms"
    try:
        added = _get(summaries, "rproxy", "get_1k_c1").added_p99_us
    except LookupError as error:
        return Check(name, "SKIP", str(error))
    if added is None:
        return Check(name, "SKIP", "no direct result to compare with")
    return Check(name, "PASS" if added < 5000 else "FAIL", f"rproxy +{_us(added)}")


def _html_check(summaries: dict[Cell, Summary]) -> Check:
    name = "HTML rewriting, 100 KiB page, proxy on one core: rproxy >= 30 MB/s"
    try:
        ours = _get(summaries, "rproxy", "get_html_c8")
    except LookupError as error:
        return Check(name, "SKIP", str(error))
    rate = ours.rate * HTML_SIZE / 1e6
    detail = f"rproxy {rate:.1f} MB/s"
    if ours.cpu_us_per_op:
        detail += f", {HTML_SIZE / ours.cpu_us_per_op:.1f} MB per CPU second"
    if ours.added_p50_us is not None:
        detail += f", added p50 {_us(ours.added_p50_us)}"
    return Check(name, "PASS" if rate >= 30 else "FAIL", detail)


def checks(summaries: dict[Cell, Summary]) -> list[Check]:
    return [
        _cpu_check(summaries),
        _ratio_check(summaries, "get_1k_c32", "chp", 1.5, "1 KiB c=32 throughput"),
        _ratio_check(summaries, "get_1k_c32", "jhsingle", 5.0, "1 KiB c=32 throughput"),
        _ratio_check(summaries, "get_1m_c8", "nginx-proxy", 0.9, "1 MiB c=8 throughput"),
        _ws_check(summaries),
        _html_check(summaries),
        _tail_check(summaries),
    ]


def render_checks(results: list[Check]) -> str:
    return "\n".join(f"  {c.status:4s}  {c.name}  ({c.detail})" for c in results)
