"""The log level of a line a child wrote: INFO unless the line says it is a warning or an error.

Apps write their ordinary log lines to stderr (Python's logging, tornado, Jupyter, uvicorn), so
the stream says nothing about the level; the line does. ``OutputLevels`` reads the common marks:
a level word (``WARNING``, ``ERROR`` ...), tornado's ``[W ...]`` / ``[E ...]`` prefixes,
``level=warn``, Python's ``...Warning:`` and tracebacks. An indented line or a traceback's last
line keeps the level of the line before it, so a traceback is logged at one level. ANSI colour
codes are taken out first (``clean``), so a coloured ``[33mWARN`` reads as a warning and the log
stays plain text. It guesses a level; it changes nothing else about the line.
"""

from __future__ import annotations

import logging
import re

__all__ = ["OutputLevels", "clean"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ERROR = re.compile(
    r"^\[[EC][ \]]|^[EF]\d{4} |\b(?:ERROR|CRITICAL|FATAL|Fatal)\b|^Traceback \(most recent"
    r"|\blevel=(?:error|fatal|critical)\b|^(?:error|Error|fatal):",
)
_WARNING = re.compile(
    r"^\[W[ \]]|^W\d{4} |\b(?:WARNING|WARN|Warning)\b|\blevel=warn(?:ing)?\b|\b\w+Warning:"
)
_CONTINUATION = re.compile(r"^[ \t]|^\w*(?:Error|Exception)\b")


def clean(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


class OutputLevels:
    """Guesses the level of each line of one output stream, in order."""

    def __init__(self) -> None:
        self._previous = logging.INFO

    def level(self, line: str) -> int:
        """The level to log ``line`` (already ``clean``) at."""
        if _ERROR.search(line):
            level = logging.ERROR
        elif _WARNING.search(line):
            level = logging.WARNING
        elif self._previous > logging.INFO and line and _CONTINUATION.match(line):
            level = self._previous
        else:
            level = logging.INFO
        self._previous = level
        return level
