"""docs/configuration.md's reference: up to date with the code, and complete by independent counts.

The generated part must equal ``render()``; and every option string of the parser, every TOML key
of sources.py and every environment variable the rproxy source reads (found by reading the source,
not by asking reference.py) must appear in what ``render()`` prints.
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rproxy import reference
from rproxy.cli import build_parser
from rproxy.sources import ENVIRONMENT, FILE_KEYS, SERVICE_KEYS, load_config

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
COMMAND = "python -m rproxy.reference --write docs/configuration.md"
# os.environ.get("X"), environ["X"], env.get("X"), (a or os.environ).get("X"), os.getenv("X")
_READ = re.compile(
    r"""(?:\b(?:environ|env)\)?(?:\.get\(|\[)|\bgetenv\()\s*["']([A-Z][A-Z0-9_]*)["']"""
)
# Read back by entrypoint.main from the environment prepare_user has just built: not an input.
_NOT_INPUTS = {"HOME"}


def _reads() -> Iterator[tuple[str, str]]:
    """(module, variable) for every environment variable read by name in rproxy/."""
    for path in sorted((ROOT / "rproxy").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for name in _READ.findall(path.read_text(encoding="utf-8")):
            if name not in _NOT_INPUTS:
                yield module, name


def _documented(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_generated_section_is_current() -> None:
    """The reference in docs/configuration.md is exactly what the code renders now."""
    text = DOC.read_text(encoding="utf-8")
    assert reference.BEGIN in text
    assert reference.END in text
    assert reference.generated_part(text) == reference.render(), (
        f"docs/configuration.md is out of date with the code: run `{COMMAND}`"
    )


def test_every_option_string_is_documented() -> None:
    """Each flag the parser accepts, compatibility aliases and ignored ones included."""
    text = reference.render()
    options = [o for action in build_parser()._actions for o in action.option_strings]
    assert len(options) > 60
    assert [o for o in options if not _documented(text, o)] == []


def test_every_toml_key_is_documented() -> None:
    """Each key of the config file and of a [[services]] table, as code."""
    text = reference.render()
    missing = [key for key in FILE_KEYS if f"`{key}`" not in text and f"`[[{key}]]`" not in text]
    assert missing == []
    assert [key for key in SERVICE_KEYS if f"`{key}`" not in text] == []


def test_every_environment_variable_read_is_documented() -> None:
    """Each variable the source reads by name (found by reading the source) is in the reference."""
    text = reference.render()
    names = {name for _, name in _reads()}
    assert {"JUPYTERHUB_API_TOKEN", "NB_UID", "CONDA_EXE", "PATH"} <= names
    assert sorted(name for name in names if f"`{name}`" not in text) == []


def test_each_reading_module_declares_its_variables() -> None:
    """A module that reads a variable lists it in its own ENVIRONMENT table, with its meaning."""
    undeclared = []
    for module, name in _reads():
        table = getattr(importlib.import_module(module), "ENVIRONMENT", ())
        if name not in {entry[0] for entry in table}:
            undeclared.append(f"{module}: {name}")
    assert undeclared == []


class _Recording(dict[str, str]):
    """An environment that notes each name asked of it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


def test_load_config_reads_only_declared_variables() -> None:
    """At run time, load_config asks the environment for the names of ENVIRONMENT and no others."""
    environ = _Recording()
    load_config({"command": ["app"]}, environ)
    assert environ.asked == {var.name for var in ENVIRONMENT}


@pytest.mark.parametrize(
    "action",
    [a for a in build_parser()._actions if a.help not in (None, argparse.SUPPRESS)],
    ids=lambda a: a.dest,
)
def test_default_in_help_agrees_with_the_dataclass(action: argparse.Action) -> None:
    """A help text's trailing parentheses state its default: it must be the dataclass's."""
    default = reference.shown(reference.default_value(action.dest))
    stated = re.search(r"\(([^()]*)\)$", action.help or "")
    if default and stated:
        assert default in stated.group(1), f"{action.help!r}: the default is {default}"


def test_write_replaces_only_the_generated_part(tmp_path: Path) -> None:
    """--write keeps the hand-written text around the markers and is stable when re-run."""
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Intro\n\n{reference.BEGIN}\nold\n{reference.END}\n\nOutro\n")
    assert reference.main(["--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith(f"# Intro\n\n{reference.BEGIN}\n\n")
    assert text.endswith(f"\n{reference.END}\n\nOutro\n")
    assert reference.generated_part(text) == reference.render()
    assert not reference.write(doc)


def test_write_refuses_a_file_without_markers(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# no markers\n")
    with pytest.raises(ValueError, match="BEGIN GENERATED"):
        reference.write(doc)
    assert doc.read_text() == "# no markers\n"
