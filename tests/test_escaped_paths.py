"""A page under the prefix that asks for a path outside it: one WARNING per path, with the fix."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web
from support import StartProxy, StartUpstream


async def test_a_page_asking_outside_the_prefix_is_told_once_per_path(
    start_upstream: StartUpstream,
    start_proxy: StartProxy,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "rproxy.escaped_paths")
    proxy = await start_proxy(await start_upstream(web.Application()), prefix="/user/me/")
    page = str(proxy / "user/me/lab")
    asks = [
        ("/static/app.js", {"Referer": page}),  # told
        ("/static/app.js", {"Referer": page}),  # the same path: told already
        ("/static/other.js", {"Referer": page}),  # told
        ("/wp-login.php", {}),  # a scanner: no page asked for it
        ("/static/x.js", {"Referer": str(proxy / "elsewhere")}),  # not a page of ours
        ("/static/y.js", {"Referer": "::not a url::"}),
        ("/favicon.ico", {"Referer": page}),  # the browser's own, whatever the page says
    ]
    for path, headers in asks:
        async with http.get(proxy.with_path(path), headers=headers) as response:
            assert response.status == 404
    told = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(told) == 2
    assert told[0].startswith("404 for GET /static/app.js, asked for by the page /user/me/lab")
    assert "docs/apps.md" in told[0]
    assert told[1].startswith("404 for GET /static/other.js")
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 5
