"""The rproxy exception tree and how upstream failures become 502 / 504 responses.

    RproxyError
    ├── ConfigError            bad settings; start-up stops with the message
    │   └── PrefixError        a URL prefix that could break out of a URL, attribute or header
    ├── BadUpstreamResponse    the upstream's bytes are not a valid HTTP/1.1 response, or stop short
    ├── RequestBodyBroken      the client's request body broke off while it was forwarded: 400
    └── UpstreamError          the upstream could not answer a request
        ├── UpstreamUnavailable   connection refused, reset or closed before a response: 502
        └── UpstreamTimeout       no connection or no bytes within the configured time: 504

Error pages are fixed plain text: they never contain anything taken from the request.
This module does not log; the caller logs with the request's context.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web


class RproxyError(Exception):
    """Base of every error rproxy raises on purpose."""


class ConfigError(RproxyError):
    """A setting is invalid; the message says which and why."""


class PrefixError(ConfigError):
    """The URL prefix is unsafe or malformed."""


class BadUpstreamResponse(RproxyError):
    """The upstream sent something that is not a valid HTTP/1.1 response, or broke one off."""


class RequestBodyBroken(RproxyError):
    """The client's request body broke off (the client went away, or its framing broke) while it
    was being forwarded: the client's failure, not the upstream's."""


class UpstreamError(RproxyError):
    """The upstream did not produce a response."""

    status: int = 502
    page: str = "The service behind this proxy did not answer."


class UpstreamUnavailable(UpstreamError):
    status = 502
    page = (
        "The service behind this proxy is not reachable. It may be starting or it may have stopped."
    )


class UpstreamTimeout(UpstreamError):
    status = 504
    page = "The service behind this proxy did not answer in time."


FAILED_HERE = "rproxy could not answer; its log says why."  # a 500: rproxy's own failure


def plain_response(status: int, explanation: str = "", **headers: str) -> web.Response:
    """A short plain-text page: the status, then ``explanation``, which must be fixed text."""
    try:
        text = f"{status} {HTTPStatus(status).phrase}\n"
    except ValueError:  # a status outside the standard table, passed on from an upstream
        text = f"{status}\n"
    return web.Response(
        status=status,
        text=f"{text}\n{explanation}\n" if explanation else text,
        content_type="text/plain",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **headers},
    )


def error_response(error: UpstreamError) -> web.Response:
    """The page for ``error``; its text is fixed, never taken from the request."""
    return plain_response(error.status, error.page)
