"""rproxy's own view after a run: its api/metrics, scraped and summarised.

The percentiles are estimated from the histogram buckets the same way rproxy's api/status does
(linear interpolation inside a bucket), over every proxied request the instance served in the run,
all scenarios together.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

_HISTOGRAMS = {
    "rproxy_overhead_seconds": "overhead (rproxy's own time)",
    "rproxy_request_duration_seconds": "total",
    "rproxy_upstream_first_byte_seconds": "upstream first byte",
    "rproxy_upstream_connect_seconds": "upstream connect (new connections)",
}


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """``buckets``: (upper bound, cumulative count) sorted, +Inf last."""
    if not buckets or not buckets[-1][1]:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank and cumulative > below:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


def scrape(base_url: str, timeout: float = 10.0) -> dict[str, dict[str, float | None]]:
    """Per histogram: count, mean, p50, p99 (seconds); plus the request count."""
    with urllib.request.urlopen(base_url + "/api/metrics", timeout=timeout) as response:
        text = response.read().decode()
    out: dict[str, dict[str, float | None]] = {}
    requests = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "rproxy_requests":
            requests = sum(s.value for s in family.samples if s.name.endswith("_total"))
        if family.name not in _HISTOGRAMS:
            continue
        buckets = sorted(
            (float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")
        )
        count = next(s.value for s in family.samples if s.name.endswith("_count"))
        total = next(s.value for s in family.samples if s.name.endswith("_sum"))
        out[family.name] = {
            "count": count,
            "mean": total / count if count else None,
            "p50": _quantile(buckets, 0.5),
            "p99": _quantile(buckets, 0.99),
        }
    out["requests"] = {"count": requests}
    return out


def render(view: dict[str, dict[str, float | None]]) -> str:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1e3:.3f} ms"

    lines = [f"  requests answered: {view['requests']['count']:,.0f}"]
    for name, label in _HISTOGRAMS.items():
        h = view.get(name)
        if h:
            lines.append(
                f"  {label}: p50 {ms(h['p50'])}, p99 {ms(h['p99'])}, mean {ms(h['mean'])}"
                f" over {h['count']:,.0f}"
            )
    return "\n".join(lines)
