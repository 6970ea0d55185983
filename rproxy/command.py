"""The wrapped command's argument list: placeholders, as jhsingle-native-proxy defines them.

``{port}``, ``{unix_socket}``, ``{base_url}`` (the prefix without its trailing slash), ``{-}``,
``{--}``, ``{origin_host}``, ``{presentation_path}``, ``{presentation_dirname}`` and
``{presentation_basename}`` are replaced anywhere inside an argument. Unlike ``str.format``, other
braces are left alone, so JSON or shell snippets in arguments survive. Arguments are never joined
into a shell line: each stays one argv element. This module starts nothing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from typing import TypeGuard

from rproxy.errors import ConfigError

PLACEHOLDERS = (
    "port",
    "unix_socket",
    "base_url",
    "-",
    "--",
    "origin_host",
    "presentation_path",
    "presentation_dirname",
    "presentation_basename",
)
# The environment variable read here.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("CONDA_EXE", "the conda that --conda-env runs (else the conda on PATH)"),
)
_PLACEHOLDER = re.compile(r"\{(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + r")\}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(\d{{1,5}}))?")


def uses(template: Sequence[str], name: str) -> bool:
    """Whether any argument of ``template`` contains the placeholder ``{name}``."""
    return any(m.group(1) == name for arg in template for m in _PLACEHOLDER.finditer(arg))


def render(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``template`` with each known placeholder replaced from ``values``, ``{-}`` and ``{--}``."""
    known = {"-": "-", "--": "--", **values}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in known:
            raise ConfigError(f"the command uses {{{name}}}, which has no value here")
        return known[name]

    return [_PLACEHOLDER.sub(substitute, arg) for arg in template]


def presentation_values(presentation_path: str) -> dict[str, str]:
    """``{presentation_path}`` made absolute, with its dirname and basename ("" when unset)."""
    if not presentation_path:
        return {"presentation_path": "", "presentation_dirname": "", "presentation_basename": ""}
    absolute = os.path.abspath(presentation_path)
    return {
        "presentation_path": absolute,
        "presentation_dirname": os.path.dirname(absolute),
        "presentation_basename": os.path.basename(absolute),
    }


def valid_origin_host(host: str | None) -> TypeGuard[str]:
    """Whether a request's Host header is a plain host[:port], safe to hand to the command."""
    match = _HOST.fullmatch(host) if host is not None else None
    return match is not None and (match.group(1) is None or int(match.group(1)) <= 65535)


def in_conda_env(argv: Sequence[str], env_name: str) -> list[str]:
    """``argv`` run inside the conda environment ``env_name``; ConfigError when conda is absent."""
    conda = os.environ.get("CONDA_EXE") or shutil.which("conda")
    if not conda:
        raise ConfigError(
            f"--conda-env {env_name!r} needs conda, but there is no $CONDA_EXE and no conda on PATH"
        )
    return [conda, "run", "--no-capture-output", "--name", env_name, *argv]
