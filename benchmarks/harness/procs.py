"""Child processes of the benchmark: start pinned to a CPU, wait until they answer, stop them.

Every process starts in its own session (so its own process group) with its output in a log file,
and is pinned with ``taskset -c CPU``, which execs the command, so the pid is the command's own.
``Processes.stop_all`` ends each group and any descendant that left it: nothing outlives the run.
CPU time comes from ``/proc/PID/stat`` (utime + stime), which for a process counts all its threads,
the live and the exited; child processes are counted by walking the tree of parent pids. Linux only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A process did not start or did not answer in time."""


@dataclass
class Proc:
    """One started process and the file that holds its output."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 4) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    """The command line that runs ``argv`` on one CPU (unchanged when ``cpu`` is None)."""
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


@dataclass
class Processes:
    """The processes of one target (or of the upstreams), stopped together."""

    logdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        cpu: int | None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        log = self.logdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                pinned(argv, cpu),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd,
                env=env,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        while self.procs:
            _stop(self.procs.pop())


def _stop(proc: Proc) -> None:
    descendants = process_tree(proc.pid)[1:] if proc.alive() else []
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.popen.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for pid in descendants:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_http(url: str, proc: Proc | None, timeout: float) -> tuple[int, bytes]:
    """Poll ``url`` until it answers with any HTTP status; return (status, body)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise StartError(f"{proc.name} exited ({proc.popen.returncode}): {proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=max(1.0, deadline - time.monotonic())) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (OSError, ValueError) as error:
            last = str(error)
        time.sleep(0.1)
    tail = f": {proc.log_tail()}" if proc is not None else ""
    raise StartError(f"{url} did not answer within {timeout:.0f} s ({last}){tail}")


def _stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/PID/stat (the command name, which may hold spaces, cut off)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
    tree, index = [root], 0
    while index < len(tree):
        tree.extend(children.get(tree[index], []))
        index += 1
    return tree


def cpu_ticks(root: int, *, descendants: bool) -> dict[int, int]:
    """utime + stime in clock ticks per pid, for ``root`` alone or its whole tree."""
    ticks = {}
    for pid in process_tree(root) if descendants else [root]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat(pid)
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def cpu_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds spent between two snapshots; a process born in between counts in full."""
    return sum(after[pid] - before.get(pid, 0) for pid in after) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a process in MiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cpu_times() -> dict[str, tuple[int, int]]:
    """(busy, total) jiffies per CPU from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values[:8]]
            idle = numbers[3] + numbers[4]  # idle + iowait
            times[name] = (sum(numbers) - idle, sum(numbers))
    return times


def cpu_busy(seconds: float = 1.0) -> dict[str, float]:
    """Percent busy per CPU over ``seconds``: is anything else running on the machine?"""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    return {
        cpu: 100 * (after[cpu][0] - busy) / max(1, after[cpu][1] - total)
        for cpu, (busy, total) in before.items()
    }
