"""What a person does in JupyterLab and Notebook 7, for the tests that run them behind rproxy."""

from __future__ import annotations

import contextlib

from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

__all__ = ["run_one_plus_one"]


async def run_one_plus_one(page: Page) -> str:
    """Type 1+1 in the notebook's first cell, run it, return its output.

    Jupyter runs nothing (the prompt stays ``[ ]``) when the cell is run before the new kernel's
    WebSocket is connected, and the page shows no sign of that moment that is the same in
    JupyterLab and Notebook 7: so the cell is run again until it answers, at most six times."""
    cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    await cell.click(timeout=60_000)
    await page.keyboard.type("1+1")
    output = page.locator(".jp-OutputArea-output").first
    for _ in range(6):
        await cell.click()
        await page.keyboard.press("Control+Enter")  # run the cell, stay on it
        with contextlib.suppress(PlaywrightTimeout):
            await output.wait_for(timeout=10_000)
            break
    return await output.inner_text(timeout=1_000)
