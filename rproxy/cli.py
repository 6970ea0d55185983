"""The ``rproxy`` command line: parse options, build a Config, serve. No proxy logic lives here.

Option names follow jhsingle-native-proxy where they overlap (``--port``, ``--ip``, ``--destport``)
so existing spawner configurations keep working; the rest are rproxy's own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import get_args

from rproxy import __version__
from rproxy.app import serve
from rproxy.config import Config, HostHeader, LogLevel, load_config
from rproxy.errors import ConfigError

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rproxy",
        description="A streaming reverse proxy that puts a web app behind one front door.",
    )
    parser.add_argument("--version", action="version", version=f"rproxy {__version__}")
    where = parser.add_argument_group("upstream")
    where.add_argument(
        "--upstream",
        metavar="URL",
        help="the running server to proxy: http://host:port or unix:/path/to.sock",
    )
    where.add_argument(
        "--destport",
        type=int,
        metavar="N",
        help="the upstream's port on 127.0.0.1 (same as --upstream http://127.0.0.1:N)",
    )
    listen = parser.add_argument_group("listening")
    listen.add_argument("--ip", help="address to listen on (default 0.0.0.0)")
    listen.add_argument("--port", type=int, help="port to listen on (default 8080; 0 = any free)")
    listen.add_argument(
        "--prefix",
        help="URL prefix to serve under and strip (default $JUPYTERHUB_SERVICE_PREFIX or /)",
    )
    fwd = parser.add_argument_group("forwarding")
    fwd.add_argument(
        "--trusted-proxies",
        metavar="N|ADDRS",
        help="believe incoming X-Forwarded-* from the nearest N proxies, or from these "
        "comma-separated addresses/networks (default: believe none)",
    )
    fwd.add_argument(
        "--host-header",
        choices=get_args(HostHeader),
        help="Host header sent upstream: the client's (preserve, default) or the upstream's",
    )
    fwd.add_argument(
        "--upstream-connections",
        type=int,
        metavar="N",
        help="most connections open to the upstream at once (default 0 = no limit)",
    )
    fwd.add_argument(
        "--connect-timeout",
        type=float,
        metavar="SECONDS",
        help="time to connect to the upstream before answering 504 (default 10)",
    )
    fwd.add_argument(
        "--read-timeout",
        type=float,
        metavar="SECONDS",
        help="idle time between two chunks from the upstream before giving up; not a total "
        "limit, so long downloads and event streams live on (default 300)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=get_args(LogLevel),
        help="log level (default INFO)",
    )
    return parser


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Parse ``argv`` into a Config; raises ConfigError for invalid values."""
    options = build_parser().parse_args(argv)
    return load_config(vars(options), environ)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rproxy`` console script; returns the exit status."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"rproxy: error: {exc}\n")
        return 2
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", config.ip, config.port, exc)
        return 1
    return 0
