"""The benchmark command: rproxy against no proxy, a minimal aiohttp proxy, nginx, CHP, jhsingle.

It installs what it needs (wrk and nginx via apt-get as root; configurable-http-proxy and
jhsingle-native-proxy under benchmarks/.peers/), starts an nginx upstream with generated files and a
WebSocket echo server, starts every target as its own processes, and measures each scenario on each
target, interleaved over ``--repeat`` rounds. The proxy under test runs alone on CPU 1; the load
generator and the upstreams share CPU 0. It prints one table per metric (medians), then the targets
with PASS / FAIL, and writes the same data as JSON. Everything it starts is stopped at the end, on
Ctrl-C or on error; nothing but loopback is used. See benchmarks/README.md.
Run: ``.venv/bin/python benchmarks/run.py`` (or ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from harness import peers, report, scrape
from harness.loads import SCENARIOS, MeasureError, Measurement, Scenario, load, measure
from harness.procs import Processes, StartError, cpu_busy, peak_rss_mib
from harness.targets import STARTERS, Bench, Endpoint, Target, start_upstreams

BENCH = Path(__file__).resolve().parent


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s, 1 repeat, no warm-up")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement (5)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of warm-up load (1; 0: none)"
    )
    parser.add_argument(
        "--targets",
        default=",".join(STARTERS),
        help=f"comma-separated, from {','.join(STARTERS)} (direct is always included)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(s.key for s in SCENARIOS),
        help=f"comma-separated, from {','.join(s.key for s in SCENARIOS)}",
    )
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.repeat, args.warmup = 1, 1, 0
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = set(names) - set(STARTERS)
    keys = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown |= set(keys) - {s.key for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown target or scenario: {', '.join(sorted(unknown))}")
    args.targets = ["direct", *(n for n in STARTERS if n in names and n != "direct")]
    args.scenarios = [s for s in SCENARIOS if s.key in keys]
    if args.duration < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("--duration and --repeat must be >= 1, --warmup >= 0")
    return args


def _cpus() -> tuple[int | None, int | None]:
    """(proxy CPU, load CPU), or no pinning on a machine with fewer than 2 usable CPUs."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2 or peers.which("taskset") is None:
        print("! fewer than 2 CPUs or no taskset: nothing is pinned, numbers mix proxy and load")
        return None, None
    return usable[1], usable[0]


def _start_targets(
    bench: Bench, names: list[str], groups: list[Processes]
) -> tuple[dict[str, Target], dict[str, str]]:
    targets: dict[str, Target] = {}
    skipped: dict[str, str] = {}
    for name in names:
        procs = bench.processes(name)
        groups.append(procs)
        try:
            targets[name] = STARTERS[name](bench, procs)
        except (StartError, peers.Unavailable, OSError) as error:
            procs.stop_all()
            skipped[name] = str(error)
            print(f"- {name}: skipped: {error}")
            continue
        for note in targets[name].notes:
            print(f"  {note}")
        print(f"+ {name}: ready")
    return targets, skipped


def _endpoint(target: Target, scenario: Scenario) -> Endpoint | None:
    return target.http if scenario.kind == "http" else target.ws


def _warm_up(targets: dict[str, Target], seconds: int, cpu: int | None) -> None:
    """A first burst of load on each target, before anything is measured."""
    warm = [s for s in SCENARIOS if s.key in ("get_1k_c32", "ws_rtt")]
    for target in targets.values():
        for scenario in warm:
            endpoint = _endpoint(target, scenario)
            if endpoint is not None:
                try:
                    load(endpoint, scenario, seconds, cpu)
                except MeasureError as error:
                    print(f"  warm-up of {target.name} failed: {error}")


def _measure_all(
    args: argparse.Namespace, targets: dict[str, Target], cpu: int | None
) -> dict[tuple[str, str], list[Measurement]]:
    plan = [
        (r, scenario, target)
        for r in range(args.repeat)
        for scenario in args.scenarios
        for target in targets.values()
        if _endpoint(target, scenario) is not None
    ]
    results: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    for index, (r, scenario, target) in enumerate(plan, 1):
        endpoint = _endpoint(target, scenario)
        assert endpoint is not None
        prefix = f"[{index:3d}/{len(plan)}] r{r + 1} {scenario.label:40s} {target.name:12s}"
        try:
            if args.warmup:
                load(endpoint, scenario, args.warmup, cpu)
            result = measure(endpoint, scenario, args.duration, cpu)
        except MeasureError as error:
            print(f"{prefix} failed: {error}", flush=True)
            continue
        results[target.name, scenario.key].append(result)
        cpu_text = "-" if result.cpu_us_per_op is None else f"{result.cpu_us_per_op:.1f}us"
        print(
            f"{prefix} {result.rate:12,.1f} {scenario.unit:5s} p50 {result.p50_us:8.0f}us "
            f"p99 {result.p99_us:8.0f}us cpu/op {cpu_text:>8s}"
            + (f" errors {result.errors}" if result.errors else ""),
            flush=True,
        )
    return results


def _peak_rss(targets: dict[str, Target]) -> dict[str, float | None]:
    rproxy = targets.get("rproxy")
    if rproxy is None:
        return {}
    return {
        kind: peak_rss_mib(pid) for kind, pid in zip(("http", "ws"), rproxy.rss_pids, strict=False)
    }


def _idle_check(when: str) -> dict[str, float]:
    """Print how busy the CPUs are while this benchmark runs nothing."""
    busy = cpu_busy()
    text = ", ".join(f"{cpu} {pct:.0f}%" for cpu, pct in busy.items())
    warning = (
        "  ! something else is running: numbers will be noisy" if max(busy.values()) > 10 else ""
    )
    print(f"CPU busy {when} (nothing of ours running): {text}{warning}", flush=True)
    return busy


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _rproxy_view(targets: dict[str, Target]) -> dict[str, dict[str, dict[str, float | None]]]:
    """rproxy's api/metrics, summarised, per instance (http, ws); empty without rproxy."""
    target = targets.get("rproxy")
    if target is None:
        return {}
    views = {}
    for kind, endpoint in (("http", target.http), ("ws", target.ws)):
        if endpoint is None:
            continue
        try:
            views[kind] = scrape.scrape(endpoint.url)
        except OSError as error:
            print(f"! could not scrape rproxy's api/metrics ({kind}): {error}")
    return views


def main() -> int:
    args = _parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for note in peers.ensure_system_tools():
        print(f"! {note}")
    missing = [tool for tool in ("wrk", "nginx", "taskset") if peers.which(tool) is None]
    if missing:
        print(
            f"cannot run: {', '.join(missing)} missing (install: apt-get install wrk nginx-light)"
        )
        return 2
    proxy_cpu, load_cpu = _cpus()
    idle_before = _idle_check("before")
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})
    started = time.monotonic()
    groups: list[Processes] = []
    with tempfile.TemporaryDirectory(prefix="rproxy-bench-") as tmp:
        try:
            bench = Bench(Path(tmp), proxy_cpu=proxy_cpu, load_cpu=load_cpu)
            upstream = bench.processes("upstream")
            groups.append(upstream)
            start_upstreams(bench, upstream)
            targets, skipped = _start_targets(bench, args.targets, groups)
            machine = peers.machine_info()
            print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
            print(f"pinning: proxy on CPU {proxy_cpu}, load generator and upstreams on {load_cpu}")
            _warm_up(targets, 1, load_cpu)
            results = _measure_all(args, targets, load_cpu)
            rss = _peak_rss(targets)
            own_view = _rproxy_view(targets)
        except KeyboardInterrupt:
            print("interrupted: stopping everything")
            return 130
        except StartError as error:
            print(f"cannot start the upstreams: {error}")
            return 2
        finally:
            for group in reversed(groups):
                group.stop_all()
    idle_after = _idle_check("after")
    summaries = report.summarize(results)
    names = list(targets)
    print(f"\nmedians of {args.repeat} interleaved runs of {args.duration} s each")
    print(report.render(summaries, args.scenarios, names))
    print()
    for kind, mib in rss.items():
        print(f"rproxy ({kind} instance) peak RSS (VmHWM) after the run: {mib or 0:.1f} MiB")
    for kind, view in own_view.items():
        print(f"\nrproxy's own view, api/metrics of the {kind} instance after the run:")
        print(scrape.render(view))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    outcome = report.checks(summaries)
    print("\ntargets\n" + report.render_checks(outcome))
    _write_json(
        args.json,
        {
            "machine": machine,
            "settings": {
                "duration_s": args.duration,
                "repeat": args.repeat,
                "warmup_s": args.warmup,
                "quick": args.quick,
                "proxy_cpu": proxy_cpu,
                "load_cpu": load_cpu,
                "wall_time_s": round(time.monotonic() - started, 1),
                "cpu_busy_pct_before": idle_before,
                "cpu_busy_pct_after": idle_after,
            },
            "targets": names,
            "skipped": skipped,
            "notes": [note for target in targets.values() for note in target.notes],
            "scenarios": [asdict(s) for s in args.scenarios],
            "results": {
                f"{target}/{key}": {
                    "median": asdict(summaries[target, key]),
                    "runs": [asdict(run) for run in runs],
                }
                for (target, key), runs in results.items()
            },
            "rproxy_peak_rss_mib": rss,
            "rproxy_own_view": own_view,
            "checks": [asdict(c) for c in outcome],
        },
    )
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
