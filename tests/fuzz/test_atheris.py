"""The atheris harness (atheris_http1.py) runs a bounded number of inputs without a crash.

Skipped where atheris is not installed (it ships wheels for Linux x86_64 only). A longer run is
one command: see atheris_http1.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HARNESS = Path(__file__).with_name("atheris_http1.py")
ROOT = Path(__file__).parents[2]


def test_libfuzzer_finds_no_crash_in_the_http1_parsing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=20000", "-seed=1", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done 20000 runs" in result.stderr
