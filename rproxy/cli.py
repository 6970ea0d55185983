"""The ``rproxy`` command line, compatible with jhsingle-native-proxy's: parse, then hand over.

``rproxy [OPTIONS] [--] COMMAND [ARGS...]``. As in jhsingle-native-proxy, options may also follow
the command when the command's own dashes are written ``{-}`` / ``{--}``, and everything after a
bare ``--`` belongs to the command. This module holds no proxy logic: values are merged by
sources.py, checked by config.py, and served by app.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_args

from rproxy import __version__
from rproxy.config import AuthType, Config, HostHeader, LogLevel
from rproxy.errors import ConfigError
from rproxy.rewriters import registry
from rproxy.serving import serve
from rproxy.sources import load_config, read_config_file, rewriter_names

logger = logging.getLogger(__name__)

_EXAMPLES = """\
examples:
  rproxy --destport 8888
      proxy a server that already runs on 127.0.0.1:8888, on port 8080
  rproxy -- streamlit hello --server.port {port} --server.headless True
      run streamlit on a free port and proxy it
  rproxy --port 8000 --destport 8505 streamlit hello {--}server.port {port} --ip 0.0.0.0
      the same on fixed ports; {--} stands for the command's own --, so --ip is rproxy's
  rproxy --destport 0 voila {presentation_path} {--}port={port} {--}no-browser \\
      {--}Voila.base_url={base_url}/ --presentation-path=./Presentation.ipynb
  rproxy --unix-socket -- myapp --bind unix:{unix_socket}
      the app listens on a Unix socket in a private directory: no TCP port to bypass rproxy

placeholders in the command: {port} {unix_socket} {base_url} (the prefix without its trailing
slash) {-} {--} {origin_host} (the first Host seen; the command then starts on the first
request) {presentation_path} {presentation_dirname} {presentation_basename}

environment: JUPYTERHUB_SERVICE_PREFIX (default --prefix), JUPYTERHUB_SERVICE_URL (default
--ip and --port), JUPYTERHUB_API_TOKEN (makes --authtype default to oauth).
precedence: command-line flags, then the --config file, then the environment, then defaults.
"""


# Options JupyterHub spawners add for jupyterhub-singleuser; accepted so that swapping works.
_IGNORED_WITH_VALUE = (
    "NotebookApp.allow_origin",
    "no-NotebookApp.allow_origin",
    "notebook-dir",
    "SingleUserNotebookApp.default_url",
    "NotebookApp.default_url",
    "ServerApp.default_url",
    "disable-user-config",
)
# Their bare forms are flags (jhsingle-native-proxy's --[no-]NotebookApp.allow_origin, the hub's
# --disable-user-config): dropped before parsing, so they never take the command's first word.
_IGNORED_FLAGS = frozenset(
    {"--NotebookApp.allow_origin", "--no-NotebookApp.allow_origin", "--disable-user-config"}
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rproxy",
        usage="%(prog)s [OPTIONS] [--] [COMMAND [ARGS ...]]",
        description="A streaming reverse proxy that puts a web app behind one front door.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    flag = argparse.BooleanOptionalAction
    add = parser.add_argument
    add("command", nargs="*", help="the command to run and proxy (placeholders below)")
    add("--version", action="version", version=f"rproxy {__version__}")
    add("--config", metavar="FILE", help="TOML file with any of these settings")

    g = parser.add_argument_group("what to proxy").add_argument
    g("--upstream", metavar="URL", help="a running server: http://host:port or unix:/path.sock")
    g("--service", action="append", metavar="PATH=URL", help="one more running server under "
      "PATH, e.g. /docs/=http://127.0.0.1:9000 (repeatable; see [[services]])")  # fmt: skip
    g("--destport", type=int, metavar="N", help="the command's port (0, the default: a free one); "
      "without a command, proxy 127.0.0.1:N")  # fmt: skip
    g("--unix-socket", action=flag, help="run the command on a Unix socket, {unix_socket}")
    g("--ready-check-path", metavar="PATH", help="path polled until the command answers (/)")
    g("--ready-timeout", type=float, metavar="S", help="seconds to wait for readiness "
      "(10; 30 with --desktop)")  # fmt: skip
    g("--restart", action=flag, help="restart the command when it exits (default: yes)")
    g("--restart-backoff-max", type=float, metavar="S", help="longest pause between restarts (30)")
    g("--grace-period", type=float, metavar="S", help="seconds for requests, then the command, "
      "to finish on shutdown before they are cut off (10)")  # fmt: skip
    g("--logs", action=flag, help="log the command's output (default: yes)")
    g("--presentation-path", "--presentation_path", metavar="PATH", help="{presentation_path}")
    g("--repo", metavar="URL", help="git repository to clone or update before starting")
    g("--repobranch", metavar="BRANCH", help="branch of --repo (master)")
    g("--repofolder", metavar="DIR", help="folder for --repo, the command's working dir (.)")
    g("--conda-env", metavar="NAME", help="run the command in this conda environment")

    g = parser.add_argument_group("listening").add_argument
    g("--ip", help="address to listen on (0.0.0.0, or JUPYTERHUB_SERVICE_URL's host)")
    g("--port", type=int, help="port to listen on (8080, or JUPYTERHUB_SERVICE_URL's; 0: any)")
    g("--prefix", help="URL prefix to serve under and strip ($JUPYTERHUB_SERVICE_PREFIX or /)")
    g("--strip-prefix", action=flag, help="strip the prefix before the app sees the path; "
      "--no-strip-prefix: the app sees it and serves under {base_url} (default: yes)")  # fmt: skip
    g("--workers", type=int, metavar="N", help="processes serving the port, to use N cores (1)")

    g = parser.add_argument_group("forwarding").add_argument
    g("--trusted-proxies", metavar="N|ADDRS", help="believe incoming X-Forwarded-* from the "
      "nearest N proxies or from these addresses/networks (default: from none)")  # fmt: skip
    g("--host-header", choices=get_args(HostHeader), help="Host sent upstream (preserve)")
    g("--upstream-connections", type=int, metavar="N", help="most HTTP connections to the "
      "upstream at once; a request waits --connect-timeout for one (0: no limit)")  # fmt: skip
    g("--connect-timeout", type=float, metavar="S", help="connect timeout, then 504 (10)")
    g("--request-timeout", type=float, metavar="S", help="idle seconds between two chunks from "
      "the upstream before 504 or abort; no total limit on long streams (300)")  # fmt: skip
    g("--client-timeout", type=float, metavar="S", help="seconds a client may hold a connection "
      "without doing its part: idle keep-alive, sending its request head, a stalled upload or "
      "download (75)")  # fmt: skip
    g("--max-body-size", type=int, metavar="BYTES", help="largest request body passed on; a "
      "larger one gets 413 (0, the default: no limit)")  # fmt: skip
    g(
        "--websocket-max-message-size",
        type=int,
        metavar="BYTES",
        help="largest WebSocket message either way; bigger ones close with 1009 (64 MiB; 0: none)",
    )
    g(
        "--websocket-heartbeat",
        type=float,
        metavar="S",
        help="ping WebSocket clients this often and drop those that do not answer (off)",
    )

    g = parser.add_argument_group("rewriting URLs in responses").add_argument
    g("--rewriters", metavar="A,B", help="rewriters to run, in order (default: headers,css,html)")
    g(
        "--rewrite-max-bytes",
        type=int,
        metavar="N",
        help="largest body a buffering rewriter holds; bigger ones pass unchanged (32 MiB)",
    )
    g("--no-rewrite", action="store_true", default=None, help="pass responses through unchanged")
    g("--list-rewriters", action="store_true", help="show installed and enabled rewriters, exit")

    g = parser.add_argument_group("status API and metrics").add_argument
    g("--api-prefix", metavar="PATH", help="where the API lives under the prefix, e.g. "
      "_rproxy/api when the app owns /api (api; _rproxy/api with --no-strip-prefix)")  # fmt: skip
    g("--no-api", action="store_true", default=None, help="serve no API endpoints")
    g("--server-timing", action=flag, help="add a Server-Timing header: rproxy's and the "
      "upstream's time")  # fmt: skip
    g("--slow-request-ms", type=float, metavar="MS", help="log requests slower than this (0: off)")

    g = parser.add_argument_group("VNC desktops in the browser").add_argument
    g("--desktop", action="store_true", default=None, help="start a private VNC server, run the "
      "command on its display and serve noVNC at the prefix")  # fmt: skip
    g("--desktop-geometry", metavar="WxH", help="size of the desktop (1280x800)")
    g("--desktop-depth", type=int, metavar="BITS", help="colour depth: 16, 24, 32 (24)")
    g("--vnc-upstream", metavar="HOST:PORT|SOCKET", help="bridge {prefix}websockify to this "
      "VNC server and serve the noVNC client at {prefix}vnc/")  # fmt: skip
    g("--vnc-path", metavar="PATH", help="the bridge's path under the prefix (websockify)")
    g("--novnc-dir", metavar="DIR", help="where noVNC is installed (/usr/share/novnc)")

    g = parser.add_argument_group("JupyterHub (jhsingle-native-proxy options)").add_argument
    g("--authtype", choices=get_args(AuthType), help="oauth when run by JupyterHub, else none")
    g("--last-activity-interval", type=int, metavar="S", help="activity report period (300)")
    g("--force-alive", "--force-keep-alive", action=flag, help="report activity even when idle "
      "(default: yes)")  # fmt: skip
    g("--hub-cache-seconds", type=int, metavar="S", help="trust the hub's answer about a token "
      "this long: a revoked API token works at most this much longer; 0: ask every time "
      "(300)")  # fmt: skip
    g("--forward-user-info", action=flag, help="send the hub user as X-CDSDASHBOARDS-JH-USER")
    g("--query-user-info", action=flag, help="send the hub user as CDSDASHBOARDS_JH_USER query")
    g("--progressive", action=flag, help="accepted for compatibility: rproxy always streams")

    g = parser.add_argument_group("logging").add_argument
    g("--log-level", type=str.upper, choices=get_args(LogLevel), help="how much to log (INFO)")
    g("--debug", action=flag, help="same as --log-level DEBUG")

    ignored = parser.add_argument_group("ignored jupyterhub-singleuser options").add_argument
    ignored("--allow-root", action=flag, dest="ignored_allow_root", help=argparse.SUPPRESS)
    for name in _IGNORED_WITH_VALUE:
        ignored(f"--{name}", nargs="?", dest=f"ignored_{name}", help=argparse.SUPPRESS)
    return parser


def parse_options(argv: Sequence[str]) -> dict[str, Any]:
    """The given options (None where absent), the command after a bare ``--`` included."""
    argv = list(argv)
    head, tail = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    if dropped := [arg for arg in head if arg in _IGNORED_FLAGS]:
        logger.debug("ignoring %s, jupyterhub-singleuser option(s)", " ".join(dropped))
        head = [arg for arg in head if arg not in _IGNORED_FLAGS]
    options = vars(build_parser().parse_intermixed_args(head))
    options["command"] = [*options["command"], *tail] or None
    for name in [k for k in options if k.startswith("ignored_")]:
        if options.pop(name) is not None:
            logger.debug("ignoring --%s, a jupyterhub-singleuser option", name[8:])
    return options


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Parse ``argv`` (and its --config file) into a Config; raises ConfigError."""
    options = parse_options(argv)
    options.pop("list_rewriters")
    path = options.pop("config")
    return load_config(options, environ, read_config_file(path) if path else None)


def enabled_rewriters(argv: Sequence[str]) -> tuple[str, ...]:
    """The rewriters ``argv`` (and its --config file) enable: needs nothing to proxy."""
    options = parse_options(argv)
    path = options.pop("config")
    given = read_config_file(path) if path else {}
    given.update({k: v for k, v in options.items() if v is not None})
    return rewriter_names(given)


def list_rewriters(enabled: Sequence[str]) -> str:
    """One line per installed rewriter: its name, where it comes from, and whether it runs."""
    installed = registry.discover()
    lines = []
    for name, entry in sorted(installed.items()):
        state = f"enabled ({list(enabled).index(name) + 1})" if name in enabled else "installed"
        lines.append(f"{name:16} {state:14} {entry.value}")
    lines += [f"{name:16} {'MISSING':14}" for name in enabled if name not in installed]
    return "\n".join(lines) + "\n"


def _fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it is, on Linux), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        logger.info("uvloop is not installed; using asyncio's event loop")
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rproxy`` console script; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if "--list-rewriters" in args:
            sys.stdout.write(list_rewriters(enabled_rewriters(args)))
            return 0
        config = parse_config(args, os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"rproxy: error: {exc}\n")
        return 2
    return run(config)


def run(config: Config, *, reuse_port: bool = False) -> int:
    """Configure logging and serve ``config`` on the fastest event loop; returns the exit status."""
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if config.log_level != "DEBUG":  # importing jupyterhub loads alembic, which says so at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
            return runner.run(serve(config, reuse_port=reuse_port))
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", config.ip, config.port, exc)
        return 1
