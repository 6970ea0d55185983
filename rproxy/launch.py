"""Run the wrapped command behind the proxy: where it listens, its argv, its folder, when it starts.

The child listens on 127.0.0.1 at ``--destport`` (0: a free port chosen here), or with
``--unix-socket`` on a socket in a private 0700 directory, so other local users cannot reach it
around the proxy. It starts with rproxy, or on the first request when asked to or when its
command uses ``{origin_host}`` (the first Host header seen, as in jhsingle-native-proxy).
Problems that make a start impossible (a placeholder without a value, no conda for
``--conda-env``) are ConfigErrors raised before rproxy listens. Process handling itself is
supervisor.py's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from rproxy import command
from rproxy.config import ChildConfig, Upstream
from rproxy.errors import RproxyError
from rproxy.gitrepo import checkout
from rproxy.supervisor import ChildSpec, ChildState, Supervisor
from rproxy.urls import Forward, UrlMapper

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1.0)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the child listens: a port on 127.0.0.1, or a socket in ``socket_dir``."""

    upstream: Upstream
    port: int | None = None
    socket_dir: Path | None = None


def allocate_endpoint(child: ChildConfig) -> Endpoint:
    """Choose the child's port, or create the private directory for its socket."""
    if child.unix_socket:
        directory = Path(tempfile.mkdtemp(prefix="rproxy-"))
        socket_path = str(directory / "app.sock")
        return Endpoint(Upstream(URL("http://localhost"), socket_path), None, directory)
    port = child.destport or _free_port()
    return Endpoint(Upstream(URL(f"http://127.0.0.1:{port}")), port)


def desktop_endpoint() -> Endpoint:
    """The private 0700 directory for a desktop's VNC socket (``--desktop``)."""
    directory = Path(tempfile.mkdtemp(prefix="rproxy-desktop-"))
    return Endpoint(Upstream(URL("http://localhost"), str(directory / "vnc.sock")), None, directory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Launcher:
    """Starts the wrapped command once and reports its state; ``finished`` says when to exit."""

    def __init__(
        self,
        child: ChildConfig,
        endpoint: Endpoint,
        *,
        base_url: str,
        grace_period: float,
        lazy: bool = False,
        keeps_prefix: bool = False,
        service: str | None = None,
    ) -> None:
        self.child = child
        self._ready_under = base_url if keeps_prefix else ""  # the app serves under its prefix
        # for the messages: what it is, and how the user keeps the prefix for it
        self._label = "the app" if service is None else f"service {service!r}"
        self._keep_option = "--no-strip-prefix" if service is None else "strip_path = false"
        self.grace_period = grace_period
        self._repofolder = Path(child.repofolder).absolute()
        self.endpoint = endpoint
        self.lazy = lazy or command.uses(self.child.argv, "origin_host")
        self.supervisor: Supervisor | None = None
        self.failure = ""
        self.finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._values = {
            **command.presentation_values(child.presentation_path),
            "base_url": base_url,
        }
        if endpoint.port is not None:
            self._values["port"] = str(endpoint.port)
        if endpoint.upstream.unix_socket:
            self._values["unix_socket"] = endpoint.upstream.unix_socket
        self._argv("localhost")  # a placeholder without a value, or no conda: fail now
        self._warn_of_a_missing_endpoint()
        self._warn_of_a_missing_base_url()
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> ChildState:
        if self.supervisor is not None:
            return self.supervisor.state
        return ChildState.FAILED if self.failure else ChildState.STARTING

    def begin(self, client: aiohttp.ClientSession, mapper: UrlMapper, origin_host: str) -> None:
        """Start the child in the background unless that has been done already."""
        if self._task is None:
            self._task = asyncio.create_task(self._launch(client, mapper, origin_host))

    async def launched(self) -> Supervisor | None:
        """Wait until a begun launch has created the supervisor (None if preparation failed)."""
        if self._task is not None:
            await asyncio.wait({self._task})
        return self.supervisor

    async def close(self) -> None:
        """Stop the child, if it was started; a checkout still under way is abandoned."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        if self.supervisor is not None:
            await self.supervisor.stop()

    def _argv(self, origin_host: str) -> list[str]:
        argv = command.render(self.child.argv, {**self._values, "origin_host": origin_host})
        return command.in_conda_env(argv, self.child.conda_env) if self.child.conda_env else argv

    async def _launch(self, client: aiohttp.ClientSession, mapper: UrlMapper, host: str) -> None:
        cwd = None
        if self.child.repo:
            folder = self._repofolder
            try:
                await checkout(self.child.repo, self.child.repobranch, folder)
            except RproxyError as exc:
                self.failure = str(exc)
                logger.error("cannot start the command: %s", exc)
                self.finished.set_result(1)
                return
            cwd = str(folder)
        path, _, query = (self._ready_under + self.child.ready_check_path).partition("?")
        ready_url = mapper.upstream_url(Forward(path, query))
        socket_path = self.endpoint.upstream.unix_socket
        spec = ChildSpec(
            argv=tuple(self._argv(host)),
            cwd=cwd,
            ready_timeout=self.child.ready_timeout,
            restart=self.child.restart,
            backoff_max=self.child.restart_backoff_max,
            stop_grace=self.grace_period,
            log_output=self.child.logs,
            ready_at=f"{socket_path} ({path})" if socket_path else str(ready_url),
        )
        hint = self._not_found_hint(mapper.public_prefix, path)

        async def probe() -> bool:
            nonlocal hint
            try:
                async with client.get(
                    ready_url, timeout=_PROBE_TIMEOUT, allow_redirects=False
                ) as response:
                    if response.status == 404 and hint:
                        logger.warning("%s", hint)
                        hint = ""
                    return True
            except (aiohttp.ClientError, TimeoutError, OSError):
                return False

        self.supervisor = Supervisor(spec, probe)
        self.supervisor.finished.add_done_callback(self._pass_on_finish)
        self.supervisor.start()

    def _warn_of_a_missing_endpoint(self) -> None:
        """rproxy chose where the app listens (a free port, or a private socket): a command that
        is not told where can never be ready there."""
        if self.child.unix_socket:
            needed, how = "unix_socket", "where it takes a socket path, or drop --unix-socket"
        elif not self.child.destport:
            needed, how = "port", "where it takes its port, or give --destport with the one it uses"
        else:
            return  # --destport: the command may name that port itself
        if not command.uses(self.child.argv, needed):
            upstream = self.endpoint.upstream
            logger.warning(
                "%s's command has no {%s}: rproxy waits for it at %s, which it cannot know; "
                "add {%s} %s",
                self._label,
                needed,
                upstream.unix_socket or upstream.url,
                needed,
                how,
            )

    def _warn_of_a_missing_base_url(self) -> None:
        """The app keeps its prefix, but its command is not told it: it will likely answer 404."""
        if self._ready_under and not command.uses(self.child.argv, "base_url"):
            logger.warning(
                "%s sees every path with %s/ in front (%s), but its command has no "
                "{base_url}: unless it is told to serve there some other way, it will answer "
                "404; see docs/apps.md for its option",
                self._label,
                self._ready_under,
                self._keep_option,
            )

    def _not_found_hint(self, base_url: str, path: str) -> str:
        """What to say when the app's first page is a 404: it likely cannot use the prefix."""
        if not base_url or self.child.ready_check_path != "/":
            return ""  # no prefix, or a ready check path of the user's: a 404 says nothing
        if self._ready_under:
            return (
                f"{self._label} answers 404 for {path}, the prefix's own page: it does not serve "
                "under the prefix it is given; give it its prefix option with {base_url} "
                f"(docs/apps.md), or drop {self._keep_option}"
            )
        if command.uses(self.child.argv, "base_url"):
            return (
                f"{self._label} answers 404 for / (what {base_url}/ is forwarded as, the prefix "
                "taken off): if its {base_url} option makes it serve only under the prefix, as "
                f"Jupyter's base_url does, add {self._keep_option} (docs/apps.md)"
            )
        return ""

    def _pass_on_finish(self, finished: asyncio.Future[int]) -> None:
        if not self.finished.done():
            self.finished.set_result(finished.result())
