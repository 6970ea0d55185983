"""The documentation's commands, run as a reader would run them (doc tests), so the docs stay true.

A fenced block runs when the line just before it is a marker (an HTML comment, invisible on the
rendered page):

- ``<!-- doctest -->`` before a ``sh`` block: run with bash (``-e -o pipefail``) in a fresh
  temporary directory, with the repository's ``.venv/bin`` first on PATH and ``REPO`` naming the
  repository; it must exit 0 within 60 s. A ``python`` block runs with the venv's Python.
- ``timeout=N``: allow N seconds. ``cwd=repo``: run in the repository instead.
- ``background ready=URL``: start the block in its own process group, wait until URL answers
  (any status below 500), keep it running for the file's later blocks, stop it at the file's end.
- ``file=NAME``: write the block's text to NAME in the temporary directory, for later blocks.

The blocks of one file run in order and share that directory. A marker that is malformed or not
followed by a fence fails the test, so a typo cannot silently turn a doc test off.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
_MARKER = re.compile(r"^<!-- doctest(?P<options>[^>]*?)\s*-->\s*$")
_LOOSE_MARKER = re.compile(r"<!--\s*doctest", re.IGNORECASE)
_FENCE = re.compile(r"^(?P<fence>```+)(?P<lang>[\w-]*)")
_OPTION = re.compile(r"^(background|timeout=\d+|cwd=repo|file=[\w.-]+|ready=\S+)$")
_RUNNERS = {"sh": ["bash", "-e", "-o", "pipefail"], "bash": ["bash", "-e", "-o", "pipefail"]}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    options: dict[str, str]

    def __str__(self) -> str:
        where = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        return f"{where}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The marked blocks of ``path``, in order; a broken marker raises ValueError."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    for number, line in enumerate(lines):
        marker = _MARKER.match(line)
        if marker is None:
            if _LOOSE_MARKER.search(line):
                raise ValueError(f"{path.name}:{number + 1}: malformed doctest marker {line!r}")
            continue
        words = marker["options"].split()
        if bad := [word for word in words if not _OPTION.match(word)]:
            raise ValueError(f"{path.name}:{number + 1}: unknown doctest options {bad}")
        fence = _FENCE.match(lines[number + 1]) if number + 1 < len(lines) else None
        if fence is None:
            raise ValueError(f"{path.name}:{number + 1}: a doctest marker must precede a fence")
        end = next(
            (i for i in range(number + 2, len(lines)) if lines[i].strip() == fence["fence"]),
            None,
        )
        if end is None:
            raise ValueError(f"{path.name}:{number + 2}: the fence is never closed")
        options = dict(word.partition("=")[::2] for word in words)
        lang = fence["lang"]
        if "file" not in options and lang not in (*_RUNNERS, "python"):
            raise ValueError(f"{path.name}:{number + 2}: cannot run a {lang or 'plain'} block")
        if "background" in options and "ready" not in options:
            raise ValueError(f"{path.name}:{number + 1}: background needs ready=URL")
        text = "\n".join(lines[number + 2 : end]) + "\n"
        found.append(Block(path, number + 2, lang, text, options))
    return found


def _environment() -> dict[str, str]:
    env = {**os.environ, "REPO": str(REPO)}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)  # the docs' commands see what a reader's shell sees
    return env


def _command(block: Block) -> list[str]:
    if block.lang == "python":
        return [str(REPO / ".venv" / "bin" / "python"), "-c", block.text]
    return [*_RUNNERS[block.lang], "-c", block.text]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


@contextmanager
def _background(block: Block, cwd: Path, env: dict[str, str], logs: Path) -> Iterator[None]:
    log = logs / f"background-{block.line}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            _command(block), cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + float(block.options.get("timeout", 30))
        while not _answers(block.options["ready"]):  # polls the server the block starts
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{block}: {block.options['ready']} never answered\n{log.read_text()}")
            time.sleep(0.1)
        yield
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop everything in ``process``'s group, what its shell started with ``&`` too, even when
    the shell itself has ended (a server it started would hold its port for the next run)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _group_alive(process.pid) and time.monotonic() < deadline:
        process.poll()  # reaps the shell, whose pid is the group's id
        time.sleep(0.1)  # polls processes this test does not own
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _run(block: Block, cwd: Path, env: dict[str, str]) -> None:
    timeout = float(block.options.get("timeout", 60))
    try:
        done = subprocess.run(
            _command(block), cwd=cwd, env=env, capture_output=True, timeout=timeout,
            start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block}: still running after {timeout:g} s\n{exc.stdout!r}\n{exc.stderr!r}")
    if done.returncode:
        out, err = (stream.decode(errors="replace") for stream in (done.stdout, done.stderr))
        pytest.fail(
            f"{block} exited {done.returncode}\n--- block\n{block.text}"
            f"--- stdout\n{out}--- stderr\n{err}"
        )


RUNNABLE = [path for path in DOCS if _LOOSE_MARKER.search(path.read_text())]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("doc", RUNNABLE, ids=[str(p.relative_to(REPO)) for p in RUNNABLE])
def test_the_documented_commands_work(doc: Path, tmp_path: Path) -> None:
    env = _environment()
    with ExitStack() as servers:
        for block in blocks_of(doc):
            cwd = REPO if block.options.get("cwd") == "repo" else tmp_path
            if "file" in block.options:
                (tmp_path / block.options["file"]).write_text(block.text)
            elif "background" in block.options:
                servers.enter_context(_background(block, cwd, env, tmp_path))
            else:
                _run(block, cwd, env)


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_doctest_markers_are_well_formed(doc: Path) -> None:
    blocks_of(doc)  # raises on a marker that would silently not run


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("<!-- doctest -->\nrproxy --help\n", "must precede a fence", id="no-fence"),
        pytest.param("<!-- doctest bakground -->\n```sh\nx\n```\n", "unknown", id="typo"),
        pytest.param("<!-- doctest -->\n```sh\nx\n", "never closed", id="unclosed"),
        pytest.param("<!--doctest-->\n```sh\nx\n```\n", "malformed", id="no-space"),
        pytest.param("<!-- doctest -->\n```toml\nx = 1\n```\n", "cannot run", id="toml-no-file"),
        pytest.param("<!-- doctest background -->\n```sh\nx\n```\n", "ready=", id="no-ready"),
    ],
)
def test_a_broken_marker_is_an_error(text: str, problem: str, tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    with pytest.raises(ValueError, match=problem):
        blocks_of(doc)


def test_a_failing_block_fails_the_doc(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- doctest -->\n```sh\nfalse\necho never\n```\n")
    with pytest.raises(pytest.fail.Exception, match="exited 1"):
        _run(blocks_of(doc)[0], tmp_path, _environment())


if __name__ == "__main__":  # pragma: no cover - a listing for writers: python tests/test_docs.py
    for path in DOCS:
        for block in blocks_of(path):
            sys.stdout.write(f"{block} {block.lang} {block.options}\n")


def test_what_a_background_block_started_is_stopped_after_its_shell_ended() -> None:
    # a block's shell that has exited (its server crashed) while something it started with &
    # still runs: that process is stopped too, or it would hold its port for the next run
    process = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdout is not None
    with process.stdout:
        child = int(process.stdout.readline())
    process.wait(timeout=10)  # the shell has ended; its child has not
    os.kill(child, 0)
    _stop_group(process)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
