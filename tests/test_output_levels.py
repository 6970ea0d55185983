"""The level a child's output line is logged at: what the line says, not the stream it came on."""

from __future__ import annotations

import logging

import pytest

from rproxy.output_levels import OutputLevels, clean

INFO, WARNING, ERROR = logging.INFO, logging.WARNING, logging.ERROR


@pytest.mark.parametrize(
    ("line", "level"),
    [
        pytest.param("[I ServerApp] Serving notebooks", INFO, id="jupyter-i"),
        pytest.param(
            "[W ServerApp] All authentication is off",
            WARNING,
            id="jupyter-w",
        ),
        pytest.param("[E ServerApp] Uncaught exception", ERROR, id="jupyter-e"),
        pytest.param("[C ServerApp] Running as root", ERROR, id="jupyter-c"),
        pytest.param("INFO:     Uvicorn running on http://127.0.0.1:8000", INFO, id="uvicorn"),
        pytest.param("WARNING:root:disk almost full", WARNING, id="python-logging-warning"),
        pytest.param("2026-12-07 10:00:00 ERROR app: it broke", ERROR, id="level-word"),
        pytest.param("time=... level=warn msg=slow", WARNING, id="logfmt-warn"),
        pytest.param("/x.py:3: DeprecationWarning: old", WARNING, id="python-warning"),
        pytest.param("  You can now view your Streamlit app in your browser.", INFO, id="indented"),
        pytest.param("no warnings, 0 errors so far", INFO, id="lowercase-words"),
        pytest.param("E0101 12:00:00.000 glog error", ERROR, id="glog-e"),
        pytest.param("", INFO, id="empty"),
    ],
)
def test_a_line_says_its_level(line: str, level: int) -> None:
    assert OutputLevels().level(line) == level


def test_a_traceback_is_one_level() -> None:
    levels = OutputLevels()
    lines = [
        "Traceback (most recent call last):",
        '  File "app.py", line 3, in <module>',
        "    main()",
        "ValueError: bad value",
        "back to normal",
    ]
    assert [levels.level(line) for line in lines] == [ERROR, ERROR, ERROR, ERROR, INFO]


def test_an_indented_line_after_an_ordinary_one_stays_info() -> None:
    levels = OutputLevels()
    assert [levels.level(line) for line in ["Serving:", "    http://127.0.0.1:1/"]] == [INFO] * 2


def test_colour_codes_are_taken_out() -> None:
    coloured = "\x1b[33mWARN\x1b[39m slow start \x1b[1A"
    assert clean(coloured) == "WARN slow start "
    assert OutputLevels().level(clean(coloured)) == WARNING
    assert clean("plain") == "plain"
