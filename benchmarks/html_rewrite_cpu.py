"""CPU per page of the html rewriter on the benchmark page, split into its parts.

Builds the rewriters and the RewriteContext the way the proxy does (prefix ``/user/alice/``,
``Content-Type: text/html`` without a charset, as nginx sends it) and rewrites ``page.html`` of
``run.py`` (100 KiB, 1,600 root-relative links) through ``rewrite_response`` and the body
pipeline, fed in ``--chunk``-byte pieces. Within those same runs, ``time.process_time`` is read
around lxml's parse (``etree.fromstring``), ``_rewrite_tree`` (the Python walk and the URL
policy) and ``_serialise``; "other" is the rest of the page's CPU time: encoding detection, regex
scans, buffering, the pipeline, freeing the tree. It prints CPU ms per page, the median and the
minimum over ``--rounds`` rounds of ``--pages`` pages, and then the floor of lxml alone: parse,
free and serialise of the page with nothing rewritten.
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
from rproxy.rewriters.chain import rewrite_response  # noqa: E402
from rproxy.rewriters.registry import DEFAULT, load  # noqa: E402
from rproxy.urls import UrlMapper  # noqa: E402

PREFIX, UPSTREAM, HOST = "/user/alice/", URL("http://127.0.0.1:8080"), "127.0.0.1:8000"
HEADERS = CIMultiDict({"Content-Type": "text/html", "Content-Length": str(100 * 1024)})
PARTS = ("parse", "walk + mapping", "serialise")


class _Clocks:
    """CPU seconds spent in each part, read around the calls the rewriter makes."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(PARTS, 0.0)

    def wrap(self, part: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return step(*args, **kwargs)
            finally:
                self.spent[part] += time.process_time() - start

        return timed


class _TimedEtree:
    """lxml.etree as html.py sees it, with ``fromstring`` (the parse) timed."""

    def __init__(self, clocks: _Clocks) -> None:
        self.fromstring = clocks.wrap("parse", etree.fromstring)

    def __getattr__(self, name: str) -> Any:
        return getattr(etree, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100, help="pages per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="body piece size, bytes")
    args = parser.parse_args()
    assert Path(html.__file__).is_relative_to(BENCH.parent), html.__file__

    page = _html_page()
    chunks = [page[i : i + args.chunk] for i in range(0, len(page), args.chunk)]
    mapper = UrlMapper(PREFIX, UPSTREAM)
    rewriters = load(DEFAULT)

    def rewrite() -> bytes:
        rewritten = rewrite_response(
            rewriters, HEADERS.copy(), status=200, method="GET", path="/page.html",
            urls=mapper, public_host=HOST, failures=Counter(),
            options={"max_bytes": 32 * 1024 * 1024},
        )  # fmt: skip
        assert rewritten.body is not None
        out = [rewritten.body.feed(chunk) for chunk in chunks]
        return b"".join([*out, rewritten.body.flush()])

    assert rewrite().count(PREFIX.encode()) == 1600, "the page was not rewritten"
    clocks = _Clocks()
    html.etree = _TimedEtree(clocks)  # type: ignore[assignment]
    html._rewrite_tree = clocks.wrap("walk + mapping", html._rewrite_tree)  # type: ignore[assignment]
    html._serialise = clocks.wrap("serialise", html._serialise)  # type: ignore[assignment]

    rounds: dict[str, list[float]] = {name: [] for name in (*PARTS, "other", "total")}
    for _ in range(args.rounds):
        clocks.spent = dict.fromkeys(PARTS, 0.0)
        total = _timed(rewrite, args.pages)
        for name in PARTS:
            rounds[name].append(clocks.spent[name] * 1000 / args.pages)
        rounds["other"].append(total - sum(rounds[name][-1] for name in PARTS))
        rounds["total"].append(total)
    html.etree = etree

    print(f"CPU ms per page, {args.rounds} rounds x {args.pages} pages: median (min)")
    for name, values in rounds.items():
        print(f"  {name:<16} {statistics.median(values):6.2f} ({min(values):.2f})")
    mb_s = len(page) / statistics.median(rounds["total"]) / 1000
    print(f"  = {mb_s:.1f} MB of page per CPU second (median)")

    lxml_parser = html.HtmlParsers().get("utf-8")
    tree = etree.fromstring(page, lxml_parser).getroottree()
    floor = {
        "parse + free": lambda: etree.fromstring(page, lxml_parser),
        "serialise": lambda: etree.tostring(
            tree, method="html", doctype=tree.docinfo.doctype, encoding="utf-8"
        ),
    }
    spent: dict[str, list[float]] = {name: [] for name in floor}
    for _ in range(args.rounds):
        for name, step in floor.items():
            spent[name].append(_timed(step, args.pages))
    best = sum(min(values) for values in spent.values())
    print("lxml alone, nothing rewritten: median (min)")
    for name, values in spent.items():
        print(f"  {name:<16} {statistics.median(values):6.2f} ({min(values):.2f})")
    print(f"  floor {best:.2f} ms = {len(page) / best / 1000:.1f} MB/s at best")


def _timed(step: Callable[[], object], n: int) -> float:
    """CPU ms per call of ``step``, over ``n`` calls."""
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        step()
    return (time.process_time() - start) * 1000 / n


if __name__ == "__main__":
    main()
