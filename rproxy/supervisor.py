"""Supervise one child process: start, readiness, output, restart with backoff, stop, signals.

The child runs in its own session (process group) so that stopping it reaches everything it
started: SIGTERM to the group, SIGKILL after a grace period, and SIGKILL for any leftovers once the
leader has exited, so no orphan outlives rproxy. Should rproxy itself be killed outright, the
child gets SIGTERM from the kernel (util-linux ``setpriv --pdeathsig``, where installed).
Its stdout and stderr are read continuously (the child never blocks on a full pipe), logged line
by line at the level the line itself shows (output_levels.py: INFO unless it is a warning or an
error; apps log to stderr), long lines cut, and the last lines kept for error pages.

Why not simpervisor, which the peers use: it restarts a crashing child at once with no backoff,
signals only the leader rather than its process group, and installs process-wide SIGINT / SIGTERM
handlers of its own (module-global state) that would take shutdown ordering away from rproxy.
This module knows nothing about HTTP: readiness is a probe function it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shlex
import shutil
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from rproxy.output_levels import OutputLevels, clean

logger = logging.getLogger(__name__)

ReadyProbe = Callable[[], Awaitable[bool]]

# The environment variable read here (the child's, when it has its own environment).
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("PATH", "where the command is looked up, as a shell would"),
)
_FIRST_BACKOFF = 0.5
_FIRST_PROBE_PAUSE = 0.05
_MAX_PROBE_PAUSE = 1.0
_MAX_LINE = 4000
_TAIL_LINES = 40
_EXIT_CANNOT_RUN = 127


class ChildState(StrEnum):
    """STARTING: spawned, not answering yet; RESTARTING: exited, waiting out the backoff."""

    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to run and watch the child; ``argv`` has its placeholders already filled in."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: Mapping[str, str] | None = None
    ready_timeout: float = 10.0
    restart: bool = True
    backoff_max: float = 30.0
    stop_grace: float = 10.0
    log_output: bool = True
    ready_at: str = ""  # where readiness is asked, for the messages: a URL, or a socket's


class Supervisor:
    """Runs ``spec`` until stopped; ``finished`` resolves with an exit status if it gives up."""

    def __init__(self, spec: ChildSpec, probe: ReadyProbe, *, name: str = "app") -> None:
        self.spec = spec
        self.name = name
        self.state = ChildState.STOPPED
        self._changed = asyncio.Event()
        self.problem = ""
        self.restarts = 0
        self.started_at: float | None = None
        self._probe = probe
        self._output: deque[str] = deque(maxlen=_TAIL_LINES)
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # If rproxy itself is killed (SIGKILL, the OOM killer), the child gets SIGTERM.
        setpriv = shutil.which("setpriv")
        self._parent_death_signal = (setpriv, "--pdeathsig", "TERM", "--") if setpriv else ()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process and process.returncode is None else None

    def output_tail(self) -> list[str]:
        """The child's last lines of output, oldest first."""
        return list(self._output)

    def start(self) -> None:
        """Start supervising in the background; returns at once."""
        if self._task is None:
            self._set_state(ChildState.STARTING)
            self._task = asyncio.create_task(self._run(), name=f"supervise {self.name}")

    async def stop(self) -> None:
        """Stop the child and everything in its process group; wait until they are gone."""
        self._stopping = True
        process = self._process
        if process and process.returncode is None:
            logger.info("stopping %s (pid %d)", self.name, process.pid)
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.spec.stop_grace)
            except TimeoutError:
                grace = self.spec.stop_grace
                logger.warning("%s ignored SIGTERM for %.0f s; sending SIGKILL", self.name, grace)
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        if self._task:
            self._task.cancel()
            await asyncio.wait({self._task})
        process = self._process  # a start may have raced with the stop
        if process:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        self._set_state(ChildState.STOPPED)

    async def wait_for(self, *states: ChildState) -> ChildState:
        """Wait until the child is in one of ``states``; return that state."""
        while self.state not in states:
            await self._changed.wait()
        return self.state

    def _set_state(self, state: ChildState) -> None:
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()

    def forward(self, signum: int) -> None:
        """Send ``signum`` to the child's process group, if it runs."""
        if self.pid is not None:
            _signal_group(self.pid, signum)

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF
        while not self._stopping:
            try:
                process = await self._spawn()
            except OSError as exc:
                self._give_up(f"cannot run {self.spec.argv[0]!r}: {exc.strerror}", _EXIT_CANNOT_RUN)
                return
            pumps = [
                asyncio.create_task(self._pump(process.stdout)),
                asyncio.create_task(self._pump(process.stderr)),
            ]
            readiness = asyncio.create_task(self._watch_readiness(process))
            try:
                code = await process.wait()
                await asyncio.wait(pumps, timeout=1.0)
            finally:
                for task in (readiness, *pumps):
                    task.cancel()
                _signal_group(process.pid, signal.SIGKILL)
            if self._stopping:
                return
            if self.state is ChildState.READY:
                backoff = _FIRST_BACKOFF
            if not self.spec.restart:
                self._give_up(f"exited with status {code}", code or 1)
                return
            self.restarts += 1
            self._set_state(ChildState.RESTARTING)
            self.problem = f"exited with status {code}"
            logger.warning(
                "%s exited with status %s; restart %d in %.1f s",
                self.name,
                code,
                self.restarts,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.spec.backoff_max)

    async def _spawn(self) -> asyncio.subprocess.Process:
        self._set_state(ChildState.STARTING)
        program = self.spec.argv[0]
        path = (self.spec.env or os.environ).get("PATH")
        if not (os.sep in program or shutil.which(program, path=path)):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        process = await asyncio.create_subprocess_exec(
            *self._parent_death_signal,
            *self.spec.argv,
            cwd=self.spec.cwd,
            env=self.spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._process = process
        self.started_at = time.monotonic()
        logger.info("started %s (pid %d): %s", self.name, process.pid, shlex.join(self.spec.argv))
        return process

    async def _watch_readiness(self, process: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        pause = _FIRST_PROBE_PAUSE
        while process.returncode is None:
            if await self._probe():
                self._set_state(ChildState.READY)
                self.problem = ""
                logger.info("%s is ready after %.2f s", self.name, loop.time() - began)
                return
            waited = loop.time() - began
            if waited > self.spec.ready_timeout and self.state is not ChildState.FAILED:
                self._set_state(ChildState.FAILED)
                at = f" at {self.spec.ready_at}" if self.spec.ready_at else ""
                self.problem = f"not ready after {self.spec.ready_timeout:g} s{at}; still waiting"
                logger.error("%s is %s; its last output:%s", self.name, self.problem, self._tail())
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, _MAX_PROBE_PAUSE)

    async def _pump(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        levels = OutputLevels()
        pending = b""
        overlong = False
        while chunk := await stream.read(65536):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if overlong:
                    overlong = False
                    continue
                self._emit(line, levels)
            if len(pending) > _MAX_LINE:
                if not overlong:
                    self._emit(pending, levels)
                overlong, pending = True, b""
        if pending and not overlong:
            self._emit(pending, levels)

    def _emit(self, raw: bytes, levels: OutputLevels) -> None:
        text = clean(raw.rstrip(b"\r").decode("utf-8", "replace"))
        if len(text) > _MAX_LINE:
            text = text[:_MAX_LINE] + " [line cut]"
        self._output.append(text)
        level = levels.level(text)
        if self.spec.log_output:
            logger.log(level, "[%s] %s", self.name, text)

    def _tail(self) -> str:
        return "".join(f"\n    {line}" for line in self._output) or " (none)"

    def _give_up(self, problem: str, status: int) -> None:
        self._set_state(ChildState.FAILED)
        self.problem = problem
        logger.error(
            "%s %s; giving up. Command: %s. Its last output:%s",
            self.name,
            problem,
            shlex.join(self.spec.argv),
            self._tail(),
        )
        if not self.finished.done():
            self.finished.set_result(status)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
