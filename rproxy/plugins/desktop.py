"""Desktop mode (``--desktop``): a private VNC server and an X app on it, viewed through noVNC.

rproxy starts TigerVNC's ``Xvnc`` on a Unix socket in a private 0700 directory, with no TCP
port (``-rfbport -1``), no X TCP listener and no VNC password: only rproxy can reach the socket,
and rproxy lets in only who its authentication lets in. The X display itself is guarded by an
MIT-MAGIC-COOKIE-1 in that directory (``-auth``): its socket in /tmp/.X11-unix, and the abstract
socket Linux gives it whatever the file modes, refuse any local process without the cookie; the
app gets it through ``XAUTHORITY``. When the display answers, the given
command (without one, a terminal if one is installed) runs on it with ``DISPLAY`` set. Both are
supervised like any wrapped command: restarted with backoff if they die, stopped with their
process groups. The bridge (plugins/vnc.py) connects browsers to the socket;
``-AcceptSetDesktopSize`` lets noVNC's "remote resize" follow the browser window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import struct
from pathlib import Path

from rproxy.config import DesktopOptions
from rproxy.errors import ConfigError
from rproxy.supervisor import ChildSpec, ChildState, Supervisor

logger = logging.getLogger(__name__)

_X_SOCKETS = Path("/tmp/.X11-unix")


def find_xvnc() -> str:
    xvnc = shutil.which("Xvnc") or shutil.which("Xtigervnc")
    if xvnc is None:
        raise ConfigError(
            "--desktop needs TigerVNC's Xvnc: apt-get install tigervnc-standalone-server"
        )
    return xvnc


def free_display(start: int = 10, avoid: frozenset[int] = frozenset()) -> int:
    """The first display number without an X socket or lock file (from :10, clear of users'),
    other than those in ``avoid``."""
    for number in range(start, start + 1000):
        taken = (_X_SOCKETS / f"X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists()
        if not taken and number not in avoid:
            return number
    raise RuntimeError("no free X display number between :10 and :1009")


class Desktop:
    """Xvnc on ``socket_path`` and the app on its display; ``start`` returns at once."""

    def __init__(
        self,
        options: DesktopOptions,
        socket_path: str,
        stop_grace: float,
        *,
        avoid: frozenset[int] = frozenset(),
    ) -> None:
        self.options = options
        self.stop_grace = stop_grace
        self.socket_path = socket_path
        self.display = free_display(avoid=avoid)  # not one another desktop here has taken
        self.server: Supervisor | None = None
        self.app: Supervisor | None = None
        self.xauthority: Path | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        options = self.options
        self.xauthority = write_xauthority(Path(self.socket_path).parent, self.display)
        argv = (
            find_xvnc(), f":{self.display}", "-auth", str(self.xauthority),
            "-rfbunixpath", self.socket_path,
            "-rfbunixmode", "0600", "-rfbport", "-1", "-SecurityTypes", "None",
            "-nolisten", "tcp", "-geometry", options.geometry, "-depth", str(options.depth),
            "-AlwaysShared", "-AcceptSetDesktopSize", "-desktop", "rproxy",
        )  # fmt: skip
        spec = ChildSpec(argv=argv, ready_timeout=options.ready_timeout,
                         stop_grace=self.stop_grace)  # fmt: skip
        self.server = Supervisor(spec, self._display_answers, name="Xvnc")
        self.server.start()
        self._task = asyncio.create_task(self._run(self.server), name="desktop")

    async def wait_ready(self) -> ChildState:
        """READY once Xvnc greets on its socket; FAILED if it could not start."""
        assert self.server is not None, "start() first"
        return await self.server.wait_for(ChildState.READY, ChildState.FAILED)

    async def _run(self, server: Supervisor) -> None:
        options = self.options
        await server.wait_for(ChildState.READY, ChildState.FAILED)
        app = options.app or _default_app()
        if server.state is ChildState.FAILED or not app:
            if not app:
                logger.info("desktop :%d ready, with no app (no terminal found)", self.display)
            return
        env = {**os.environ, "DISPLAY": f":{self.display}", "XAUTHORITY": str(self.xauthority)}
        app_spec = ChildSpec(argv=app, env=env, ready_timeout=options.ready_timeout,
                             stop_grace=self.stop_grace)  # fmt: skip
        self.app = Supervisor(app_spec, _at_once, name="desktop app")
        self.app.start()

    async def _display_answers(self) -> bool:
        """Ready when the VNC socket greets with the RFB banner."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            return False
        try:
            return (await asyncio.wait_for(reader.read(12), timeout=2)).startswith(b"RFB ")
        except TimeoutError:
            return False
        finally:
            writer.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        for supervisor in (self.app, self.server):
            if supervisor is not None:
                await supervisor.stop()


def write_xauthority(folder: Path, display: int) -> Path:
    """An Xauthority file (0600, in the private ``folder``) with a fresh MIT-MAGIC-COOKIE-1 for
    ``display``, for any address (FamilyWild): what Xvnc's ``-auth`` accepts and Xlib sends."""

    def field(data: bytes) -> bytes:
        return struct.pack(">H", len(data)) + data

    entry = struct.pack(">H", 0xFFFF) + field(b"") + field(str(display).encode())
    entry += field(b"MIT-MAGIC-COOKIE-1") + field(secrets.token_bytes(16))
    path = folder / "Xauthority"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(entry)
    return path


def _default_app() -> tuple[str, ...]:
    """A terminal, when the command line names no app: Debian's choice, else xterm."""
    for name in ("x-terminal-emulator", "xterm"):
        path = shutil.which(name)
        if path:
            return (path,)
    return ()


async def _at_once() -> bool:
    return True
