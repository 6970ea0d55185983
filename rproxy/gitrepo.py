"""``--repo``: clone a git repository into a folder, or bring an existing clone up to date.

A fresh folder gets ``git clone --branch``; an existing clone gets ``fetch`` and a fast-forward
``merge`` of the branch, so local work is never thrown away: when the update cannot fast-forward,
the clone is left as it is and a warning says why. git never prompts (no terminal, no credential
helper questions), and a clone that fails is a RepoError carrying git's own message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from rproxy.errors import RproxyError

logger = logging.getLogger(__name__)

_GIT_TIMEOUT = 600.0


class RepoError(RproxyError):
    """The repository could not be cloned."""


async def checkout(repo: str, branch: str, folder: Path) -> None:
    """Make ``folder`` a clone of ``repo`` at ``branch``, cloning or updating as needed."""
    shown = redact(repo)
    if (folder / ".git").exists():
        try:
            await _git("-C", str(folder), "fetch", "--quiet", "origin", branch)
            await _git("-C", str(folder), "checkout", "--quiet", branch)
            await _git("-C", str(folder), "merge", "--ff-only", "--quiet", f"origin/{branch}")
        except RepoError as exc:
            reason = str(exc).replace(repo, shown)
            logger.warning("could not update %s, using it as it is: %s", folder, reason)
        else:
            logger.info("updated %s from %s (%s)", folder, shown, branch)
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        await _git("clone", "--quiet", "--branch", branch, "--", repo, str(folder))
    except RepoError as exc:
        raise RepoError(str(exc).replace(repo, shown)) from None
    logger.info("cloned %s (%s) into %s", shown, branch, folder)


def redact(repo: str) -> str:
    """``repo`` without any user name or token it carries, for logs."""
    scheme, sep, rest = repo.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return repo
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


async def _git(*args: str) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    except FileNotFoundError:
        raise RepoError("--repo needs git, and git is not installed") from None
    try:
        output, _ = await asyncio.wait_for(process.communicate(), _GIT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RepoError(f"git {' '.join(args)} took longer than {_GIT_TIMEOUT:.0f} s") from None
    if process.returncode:
        message = output.decode("utf-8", "replace").strip()
        raise RepoError(f"git {' '.join(args)} failed: {message}")
