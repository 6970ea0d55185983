"""Fixtures of the attack tests: recording upstreams (see attack_support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from attack_support import Recorder, StartRecorder


@pytest.fixture
async def start_recorder() -> AsyncIterator[StartRecorder]:
    started: list[Recorder] = []

    async def start(name: str) -> Recorder:
        recorder = Recorder(name)
        await recorder.start()
        started.append(recorder)
        return recorder

    yield start
    for recorder in started:
        await recorder.close()


@pytest.fixture
async def recorder(start_recorder: StartRecorder) -> Recorder:
    return await start_recorder("upstream")


@pytest.fixture
async def victim(start_recorder: StartRecorder) -> Recorder:
    """A server no request through the proxy may ever reach."""
    return await start_recorder("victim")
