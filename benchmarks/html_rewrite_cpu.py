"""CPU per page of the html rewriter on the benchmark page, split into its parts.

Builds the rewriters and the RewriteContext the way the proxy does (prefix ``/user/alice/``,
``Content-Type: text/html`` without a charset, as nginx sends it) and rewrites ``page.html`` of
``run.py`` (100 KiB, 1,600 root-relative links) through ``rewrite_response`` and the body
pipeline, fed in ``--chunk``-byte pieces. It prints CPU ms per page (``time.process_time``),
the median and the minimum over ``--rounds`` interleaved rounds of ``--pages`` pages:

- total: the whole response body, as the proxy runs it;
- parse: lxml's parse of the page (``etree.fromstring`` with the rewriter's cached parser);
- walk + mapping: ``_rewrite_tree`` (the Python walk and the URL policy) on a fresh tree;
- serialise: ``_serialise`` of the rewritten tree;
- other: total minus the three (encoding detection, regex scans, buffering, the pipeline);

and the floor of lxml alone: parse plus serialise of the page with nothing rewritten.
Run: ``taskset -c 1 .venv/bin/python benchmarks/html_rewrite_cpu.py``. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree
from multidict import CIMultiDict
from yarl import URL

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]  # this checkout's rproxy, and the harness
from harness.targets import _html_page  # noqa: E402

from rproxy.rewriters import html  # noqa: E402
from rproxy.rewriters.base import RewriteContext  # noqa: E402
from rproxy.rewriters.chain import response_meta, rewrite_response  # noqa: E402
from rproxy.rewriters.registry import DEFAULT, load  # noqa: E402
from rproxy.urls import UrlMapper  # noqa: E402

PREFIX, UPSTREAM, HOST = "/user/alice/", URL("http://127.0.0.1:8080"), "127.0.0.1:8000"
HEADERS = CIMultiDict({"Content-Type": "text/html", "Content-Length": str(100 * 1024)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100, help="pages per part per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="body piece size, bytes")
    args = parser.parse_args()
    assert Path(html.__file__).is_relative_to(BENCH.parent), html.__file__

    page = _html_page()
    chunks = [page[i : i + args.chunk] for i in range(0, len(page), args.chunk)]
    mapper = UrlMapper(PREFIX, UPSTREAM)
    rewriters = load(DEFAULT)
    html_rewriter: Any = next(r for r in rewriters if r.name == "html")
    parsers = html_rewriter._parsers
    ctx = RewriteContext(mapper, response_meta(200, HEADERS, "/page.html"), HOST, {})
    lxml_parser = parsers.get(html._declared_encoding(page, ctx.meta.charset))
    had_doctype = True

    def total() -> None:
        rewritten = rewrite_response(
            rewriters, HEADERS.copy(), status=200, method="GET", path="/page.html",
            urls=mapper, public_host=HOST, failures=Counter(),
            options={"max_bytes": 32 * 1024 * 1024},
        )  # fmt: skip
        assert rewritten.body is not None
        for chunk in chunks:
            rewritten.body.feed(chunk)
        rewritten.body.flush()

    def parse() -> None:
        etree.fromstring(page, lxml_parser)

    rewritten_root = etree.fromstring(page, lxml_parser)
    html._rewrite_tree(rewritten_root, ctx)
    plain_root = etree.fromstring(page, lxml_parser)

    def serialise() -> None:
        html._serialise(rewritten_root.getroottree(), had_doctype)

    def serialise_plain() -> None:
        html._serialise(plain_root.getroottree(), had_doctype)

    expected = html.rewrite_html_bytes(page, ctx, parsers)
    assert expected.count(PREFIX.encode()) == 1600, "the page was not rewritten"

    results: dict[str, list[float]] = {}
    timers: dict[str, Callable[[int], float]] = {
        "total": lambda n: _timed(total, n),
        "parse": lambda n: _timed(parse, n),
        "walk + mapping": lambda n: _walk(page, lxml_parser, ctx, n),
        "serialise": lambda n: _timed(serialise, n),
        "lxml floor: serialise unchanged": lambda n: _timed(serialise_plain, n),
    }
    for _ in range(args.rounds):
        for name, timer in timers.items():
            results.setdefault(name, []).append(timer(args.pages))

    med = {name: statistics.median(values) for name, values in results.items()}
    low = {name: min(values) for name, values in results.items()}
    rows = ["parse", "walk + mapping", "serialise"]
    print(f"CPU ms per page, {args.rounds} rounds x {args.pages} pages (median / min)")
    for name in rows:
        print(f"  {name:<16} {med[name]:6.2f} / {low[name]:5.2f}")
    other_med = med["total"] - sum(med[n] for n in rows)
    other_low = low["total"] - sum(low[n] for n in rows)
    print(f"  {'other':<16} {other_med:6.2f} / {other_low:5.2f}  (total minus the parts)")
    print(f"  {'total':<16} {med['total']:6.2f} / {low['total']:5.2f}", end="")
    print(f"  = {len(page) / med['total'] / 1000:.1f} MB/s per core (median)")
    floor_med = med["parse"] + med["lxml floor: serialise unchanged"]
    floor_low = low["parse"] + low["lxml floor: serialise unchanged"]
    print(f"lxml floor (parse + serialise, nothing rewritten): {floor_med:.2f} / {floor_low:.2f}")
    print(f"  = {len(page) / floor_low / 1000:.1f} MB/s at best")


def _timed(step: Callable[[], object], n: int) -> float:
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        step()
    return (time.process_time() - start) * 1000 / n


def _walk(page: bytes, parser: Any, ctx: RewriteContext, n: int) -> float:
    """_rewrite_tree on fresh trees, each parsed just before, outside the timed part."""
    gc.collect()
    spent = 0.0
    for _ in range(n):
        root = etree.fromstring(page, parser)
        start = time.process_time()
        html._rewrite_tree(root, ctx)
        spent += time.process_time() - start
    return spent * 1000 / n


if __name__ == "__main__":
    main()
