"""What a page in Chromium asked of rproxy's origin, for the tests of apps behind rproxy.

``PageTraffic.watch(page, origin)`` records every same-origin request and response, the requests
that failed, those that went to another origin, and the page's WebSockets with the frames each
received. ``check(prefix)`` then asserts what every app test asserts: nothing failed, nothing left
the prefix (but the browser's own /favicon.ico), nothing went elsewhere, every WebSocket is under
the prefix; ``live_socket()`` that the page's one WebSocket is open and has carried messages.
``watched_page(browser, origin)`` opens a page with its traffic watched, adds what failed to the
message of an assertion that fails in it, and closes the page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Browser, Page, Request, Response, WebSocket
from yarl import URL

__all__ = ["PageTraffic", "watched_page"]

# Chromium asks for /favicon.ico at the site's root on its own when a page names no icon: a 404
# standalone (outside the prefix), the hub's answer on a hub; never the app's request
_FAVICON = "/favicon.ico"


@dataclass
class PageTraffic:
    """What a page asked of rproxy's origin, what failed, what went elsewhere, its WebSockets."""

    origin: URL
    requests: list[str] = field(default_factory=list)  # same-origin URLs
    responses: list[Response] = field(default_factory=list)  # same-origin
    failed: list[tuple[str, str]] = field(default_factory=list)  # failure, URL
    elsewhere: list[str] = field(default_factory=list)  # requests to any other origin
    sockets: list[WebSocket] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=dict)  # received, by WebSocket URL

    @classmethod
    def watch(cls, page: Page, origin: URL) -> PageTraffic:
        traffic = cls(origin)
        page.on("request", traffic._request)
        page.on("response", traffic._response)
        page.on("requestfailed", traffic._failed)
        page.on("websocket", traffic._websocket)
        return traffic

    def _same_origin(self, url: str) -> bool:
        return url.startswith(f"{self.origin}/")  # not about:, data: or blob:, nor elsewhere

    def _request(self, request: Request) -> None:
        if self._same_origin(request.url):
            self.requests.append(request.url)
        elif not request.url.startswith(("data:", "blob:", "about:")):
            self.elsewhere.append(request.url)

    def _response(self, response: Response) -> None:
        if self._same_origin(response.url):
            self.responses.append(response)

    def _failed(self, request: Request) -> None:
        # ERR_ABORTED: a request the page gave up (a reload, a poll replaced, the page closing)
        if self._same_origin(request.url) and request.failure != "net::ERR_ABORTED":
            self.failed.append((request.failure or "", request.url))

    def _websocket(self, socket: WebSocket) -> None:
        self.sockets.append(socket)
        self.frames[socket.url] = 0

        def received(payload: str | bytes) -> None:
            self.frames[socket.url] += 1

        socket.on("framereceived", received)

    def errors(self) -> list[tuple[int, str, str]]:
        """The same-origin responses with status >= 400: status, method, path."""
        return [
            (r.status, r.request.method, URL(r.url).path) for r in self.responses if r.status >= 400
        ]

    def problems(self) -> str:
        """For the message of a failed wait."""
        errors = Counter(self.errors())
        return f"same-origin requests that failed (and how often): {errors} {self.failed}"

    def check(
        self,
        prefix: str,
        expected: Collection[tuple[int, str, str]] = (),
        other_hosts: Collection[str] = (),
    ) -> list[str]:
        """Every same-origin URL asked for, once checked that none failed but the ``expected``
        (status, method, path) and none left ``prefix``, that the page asked nothing of another
        origin (but of the ``other_hosts`` the app itself links to), and that any WebSocket is
        under ``prefix``."""
        assert self.requests
        assert self.failed == []
        favicon = (404, "GET", _FAVICON)
        assert [e for e in self.errors() if e not in {*expected, favicon}] == []
        outside = [u for u in self.requests if not URL(u).path.startswith(prefix)]
        assert [u for u in outside if URL(u).path != _FAVICON] == []
        elsewhere = [u for u in self.elsewhere if URL(u).host not in other_hosts]
        assert elsewhere == [], elsewhere
        assert all(URL(s.url).path.startswith(prefix) for s in self.sockets), self.sockets
        return self.requests

    def live_socket(self) -> WebSocket:
        """The page's one WebSocket, still open, once it has received a message."""
        [socket] = self.sockets
        assert not socket.is_closed()
        assert self.frames[socket.url] > 0
        return socket


@asynccontextmanager
async def watched_page(
    browser: Browser, origin: URL, **options: Any
) -> AsyncIterator[tuple[Page, PageTraffic]]:
    """A new page of ``browser`` (``options`` as ``new_page`` takes them) and its traffic to
    ``origin``; a failed assertion inside gets the failed requests in its message."""
    page = await browser.new_page(**options)
    traffic = PageTraffic.watch(page, origin)
    try:
        yield page, traffic
    except AssertionError as error:
        error.add_note(traffic.problems())
        raise
    finally:
        await page.close()
