"""The HTTP handler: route the request target, forward it upstream, stream the answer back.

It arranges the work and keeps none of the policy: ``urls`` decides where a target goes,
``forwarding`` decides which headers cross, ``streams`` moves the bytes, ``errors`` words failures.
A failure before the response starts becomes a 502 or 504 page; a failure after it started closes
the client connection, so a truncated body is never passed off as complete.
WebSocket upgrades are routed the same way, then handed to websocket.py.
"""

from __future__ import annotations

import logging
import shlex
import time
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from rproxy import pages
from rproxy.command import valid_origin_host
from rproxy.config import Config
from rproxy.errors import (
    BadUpstreamResponse,
    RequestBodyBroken,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_response,
    plain_response,
)
from rproxy.forwarding import (
    OWN_COOKIES,
    USER_HEADER,
    USER_QUERY,
    ClientView,
    Headers,
    client_response_headers,
    upstream_request_headers,
    user_info,
    with_user_query,
    without_cookies,
)
from rproxy.keys import (
    API,
    CONFIG,
    ESCAPED_PATHS,
    HUB_USER,
    METRICS,
    OPEN_WEBSOCKETS,
    SERVICES,
    VNC,
)
from rproxy.launch import Launcher
from rproxy.metrics import RequestTiming
from rproxy.rewriters.chain import rewrite_response
from rproxy.services import Service, VncService
from rproxy.streams import (
    AiohttpSide,
    BodyReader,
    ClientSide,
    RequestBody,
    RewriteFailed,
    relay_body,
    relay_rewritten,
    too_large,
)
from rproxy.supervisor import ChildState
from rproxy.urls import BadTarget, Forward, NotOurs, Redirect
from rproxy.websocket import is_upgrade, proxy_websocket

logger = logging.getLogger(__name__)


async def handle(request: web.Request) -> web.StreamResponse:
    """Answer one request by forwarding it to the upstream (aiohttp handler for every path)."""
    app = request.app
    metrics = app[METRICS]
    timing = metrics.begin()
    status = 500
    try:
        response = await _answer(request, app, timing)
        status = response.status
        return response
    finally:
        metrics.finish(request.method, status, timing)


async def _answer(
    request: web.Request, app: web.Application, timing: RequestTiming
) -> web.StreamResponse:
    if request.version.major != 1:  # llhttp lets HTTP/0.9-style and HTTP/2.0 request lines by
        response = plain_response(505, "rproxy speaks HTTP/1.1 and HTTP/1.0.")
        response.force_close()
        return response
    if request.method == "CONNECT":  # a tunnel request: a reverse proxy forwards none
        response = plain_response(405, "rproxy does not tunnel CONNECT requests.")
        response.force_close()
        return response
    if not is_upgrade(request) and (plain := plain_route(app, request.raw_path)) is not None:
        return await _forward(request, app, *plain, timing)
    config = app[CONFIG]
    services = app[SERVICES]
    main = services.main
    route = main.urls.route(request.raw_path)
    match route:
        case Redirect(location):
            return plain_response(307, Location=location)
        case NotOurs():
            app[ESCAPED_PATHS].note(
                request.method, request.raw_path, request.headers.get("Referer")
            )
            return plain_response(404, "This path is not served by this proxy.")
        case BadTarget(reason):
            return plain_response(400, f"{reason}.")
    api = app[API]
    if api and route.path in api and request.method in ("GET", "HEAD"):
        return await api[route.path](request)
    vnc = app.get(VNC)
    if vnc is not None:
        answer = await vnc.answer(
            request,
            route.path,
            main.urls.public_prefix,
            app[OPEN_WEBSOCKETS],
            config.websocket_heartbeat,
            app[METRICS],
        )
        if answer is not None:
            return answer
    picked = services.pick(route)
    if isinstance(picked, Redirect):
        return plain_response(307, Location=picked.location)
    service, route = picked
    if isinstance(service, VncService):
        return await _vnc_service(request, services.public_path(service), service, route)
    if service is main and config.desktop is not None:  # the desktop at its root
        if route.path == "/":
            return plain_response(307, Location=f"{main.urls.public_prefix}/vnc/")
        return plain_response(404, "This server shows a desktop at its root.")
    launcher = service.launcher
    if launcher is not None and launcher.state is not ChildState.READY:
        return _not_ready(request, service, launcher)
    if config.hub.query_user_info or USER_QUERY in route.query:
        model = request.get(HUB_USER)
        info = user_info(model) if model is not None and config.hub.query_user_info else None
        route = Forward(route.path, with_user_query(route.query, info))
    if is_upgrade(request):
        app[METRICS].used()
        return await proxy_websocket(
            request,
            service.pool,
            service.urls.upstream_url(route),
            _upstream_headers(request, config, service),
            max_message_size=config.websocket_max_message_size,
            heartbeat=config.websocket_heartbeat,
            read_timeout=config.timeouts.read,
            open_sockets=app[OPEN_WEBSOCKETS],
            metrics=app[METRICS],
        )
    return await _forward(request, app, service, route, timing)


def plain_route(app: web.Application, raw_path: str) -> tuple[Service, Forward] | None:
    """The service and route of a request that is simply forwarded: its target lies under the
    prefix (no redirect, no refusal), it is neither rproxy's API nor a VNC or desktop path, its
    service is an HTTP one that is ready, and no user information goes into its query. None:
    the whole decision of ``_answer`` is needed. Upgrades, methods and versions are the caller's."""
    config = app[CONFIG]
    if config.desktop is not None or config.hub.query_user_info or app.get(VNC) is not None:
        return None
    services = app[SERVICES]
    route = services.main.urls.route(raw_path)
    if not isinstance(route, Forward) or USER_QUERY in route.query:
        return None
    api = app[API]
    if api and route.path in api:
        return None
    picked = services.pick(route)
    if isinstance(picked, Redirect) or isinstance(service := picked[0], VncService):
        return None
    launcher = service.launcher
    if launcher is not None and launcher.state is not ChildState.READY:
        return None
    return service, picked[1]


async def _vnc_service(
    request: web.Request, public_path: str, service: VncService, route: Forward
) -> web.StreamResponse:
    """A VNC service's paths: its bridge, noVNC under vnc/, and its root sends the browser there."""
    answer = await service.routes.answer(
        request,
        route.path,
        public_path.rstrip("/"),
        request.app[OPEN_WEBSOCKETS],
        request.app[CONFIG].websocket_heartbeat,
        request.app[METRICS],
    )
    if answer is not None:
        return answer
    if route.path == "/":
        return plain_response(307, Location=f"{public_path}vnc/")
    return plain_response(404, "This path shows a VNC desktop under vnc/.")


def _upstream_headers(request: web.Request, config: Config, service: Service) -> CIMultiDict[str]:
    """The headers to send upstream for a request aiohttp's server parsed."""
    view = ClientView(request.remote or "unknown", request.scheme, request.headers.get("Host"))
    return upstream_headers(request.headers, view, request.get(HUB_USER), config, service)


def upstream_headers(
    headers: Headers,
    view: ClientView,
    user: dict[str, Any] | None,
    config: Config,
    service: Service,
) -> CIMultiDict[str]:
    """The client's ``headers`` as they go upstream: forwarding.py's policy, and in JupyterHub
    mode without rproxy's cookies and with the ``user`` the hub named, when configured."""
    mapper = service.urls
    out = upstream_request_headers(
        headers,
        view,
        public_prefix=service.forwarded_prefix,
        trusted=config.trusted_proxies,
        host_header=config.host_header,
        upstream_host=mapper.upstream.raw_authority,
    )
    if config.hub.api_token:  # JupyterHub mode: the app sees neither our cookies nor spoofs
        if OWN_COOKIES in (cookies := "; ".join(out.getall("Cookie", ()))):
            out.popall("Cookie")
            if kept := without_cookies(cookies, OWN_COOKIES):
                out["Cookie"] = kept
        if user is not None and config.hub.forward_user_info:
            out[USER_HEADER] = user_info(user)
    return out


async def _forward(
    request: web.Request,
    app: web.Application,
    service: Service,
    route: Forward,
    timing: RequestTiming,
) -> web.StreamResponse:
    config = app[CONFIG]
    reader = request.content if request.body_exists else None
    body = _request_body(config, request.content_length or 0, reader, timing)
    if isinstance(body, web.Response):
        return body
    client = AiohttpSide(request)
    headers = _upstream_headers(request, config, service)
    host = request.headers.get("Host")
    answer = await _exchange(
        app, service, route, timing, client, request.method, headers, body, host
    )
    if isinstance(answer, web.Response):
        return answer
    assert client.response is not None
    return client.response


def _request_body(
    config: Config, length: int, reader: BodyReader | None, timing: RequestTiming
) -> RequestBody | web.Response | None:
    """The body to send upstream (None: none), or the 413 for a declared ``length`` too large."""
    limit = config.max_body_size
    if limit and length > limit:
        return too_large(limit)
    if reader is None:
        return None
    return RequestBody(reader, timing, idle=config.timeouts.client, limit=limit)


async def forward_plain(
    app: web.Application,
    service: Service,
    route: Forward,
    client: ClientSide,
    method: str,
    headers: Headers,
    view: ClientView,
    body: BodyReader | None,
    length: int,
    user: dict[str, Any] | None = None,
) -> None:
    """Forward a request that front.py read itself (a ``plain_route``, admitted by the
    authenticator if there is one, as ``user``; a body of ``length`` bytes from ``body``, or
    none), counted in the metrics as ``handle`` counts the others."""
    metrics = app[METRICS]
    timing = metrics.begin()
    status = 500
    try:
        config = app[CONFIG]
        upload = _request_body(config, length, body, timing)
        if isinstance(upload, web.Response):
            answer: int | web.Response = upload
        else:
            upstream = upstream_headers(headers, view, user, config, service)
            answer = await _exchange(
                app, service, route, timing, client, method, upstream, upload, view.host
            )
        if isinstance(answer, int):
            status = answer
            return
        status = answer.status
        await send_page(client, answer)
    finally:
        metrics.finish(method, status, timing)


async def answer_plain(
    app: web.Application, client: ClientSide, method: str, page: web.StreamResponse
) -> None:
    """Answer a request front.py read with one of rproxy's own pages (an authenticator's refusal
    or login), counted in the metrics as ``handle`` counts the others."""
    metrics = app[METRICS]
    timing = metrics.begin()
    try:
        await send_page(client, page)
    finally:
        metrics.finish(method, page.status, timing)


async def send_page(client: ClientSide, page: web.StreamResponse) -> None:
    """One of rproxy's own pages (``errors.plain_response``) to a ``client`` of front.py, with
    the cookies it sets."""
    if page.keep_alive is False:
        client.close_after()
    body = getattr(page, "body", None)
    text = body if isinstance(body, bytes) else b""
    page.headers["Content-Length"] = str(len(text))
    for cookie in page.cookies.values():  # as aiohttp writes them (StreamResponse._prepare_headers)
        page.headers.add("Set-Cookie", cookie.output(header="")[1:])
    sink = await client.start(page.status, page.reason, page.headers)
    await sink.write_eof(text)


async def _exchange(
    app: web.Application,
    service: Service,
    route: Forward,
    timing: RequestTiming,
    client: ClientSide,
    method: str,
    headers: CIMultiDict[str],
    body: RequestBody | None,
    public_host: str | None,
) -> int | web.Response:
    """Send the request upstream and relay the answer to ``client``: the status it was given,
    or, when nothing was sent to the client yet, the page that answers a failure."""
    mapper = service.urls
    config = app[CONFIG]
    metrics = app[METRICS]
    metrics.used()
    chunks = body.chunks() if body is not None else None
    target = f"{route.path}?{route.query}" if route.query else route.path
    sent = time.perf_counter()
    try:
        upstream = await service.pool.send(
            method,
            target,
            headers.items(),
            chunks,
            chunked=chunks is not None and "Content-Length" not in headers,
        )
    except TimeoutError as exc:
        return _failed(method, service, route, UpstreamTimeout(), exc)
    except RequestBodyBroken as exc:  # the client's doing: nothing for the upstream's account
        logger.debug("%s during %s %s", exc, method, route.path)
        # rproxy cut it off (too slow: 408, too large: 413), or the client's framing broke: 400
        refusal = body.refusal if body is not None else None
        return refusal or plain_response(400, "The request body broke off before its end.")
    except (BadUpstreamResponse, OSError) as exc:
        return _failed(method, service, route, UpstreamUnavailable(), exc)
    except ValueError:
        return plain_response(400, "A request header cannot be forwarded.")
    answered = time.perf_counter()
    timing.proxied, timing.path = True, route.path
    timing.first_byte = timing.upstream_wait = answered - sent
    timing.before_upstream = sent - timing.start
    rewritten = rewrite_response(
        service.rewriters,
        client_response_headers(upstream.headers),
        status=upstream.status,
        method=method,
        path=route.path,
        urls=mapper,
        public_host=public_host,
        failures=metrics.rewrite_failures,
        options={"max_bytes": config.rewrite_max_bytes},
    )
    if config.server_timing:
        rewritten.headers.add("Server-Timing", _server_timing(timing))
    try:
        response = await client.start(upstream.status, upstream.reason or None, rewritten.headers)
        if rewritten.body is None:
            await relay_body(upstream, response, timing)
        else:
            await relay_rewritten(upstream, response, rewritten.body, timing)
    except ConnectionResetError:
        logger.debug("client went away during %s %s", method, route.path)
    except RequestBodyBroken as exc:
        logger.debug("%s during %s %s", exc, method, route.path)
        client.close_after()
    except RewriteFailed:
        client.close_after()
    except (BadUpstreamResponse, TimeoutError) as exc:
        logger.warning(
            "upstream broke off the response to %s %s: %s; closing the client connection",
            method,
            route.path,
            _describe(exc),
        )
        client.close_after()
    finally:
        upstream.release()
        if rewritten.body is not None:
            metrics.rewrote(rewritten.body.seconds)
    return upstream.status


def _server_timing(timing: RequestTiming) -> str:
    """The upstream's time to its headers and rproxy's own until now, in milliseconds."""
    own = time.perf_counter() - timing.start - timing.upstream_wait
    return f"upstream;dur={timing.upstream_wait * 1e3:.3f}, rproxy;dur={own * 1e3:.3f}"


def _not_ready(request: web.Request, service: Service, launcher: Launcher) -> web.Response:
    if launcher.lazy and launcher.supervisor is None:
        host = request.headers.get("Host")
        if not valid_origin_host(host):
            return plain_response(400, "The Host header is not a host name.")
        launcher.begin(service.client, service.urls, host)
    supervisor = launcher.supervisor
    if launcher.state is ChildState.FAILED:
        problem = supervisor.problem if supervisor else launcher.failure
        argv = supervisor.spec.argv if supervisor else launcher.child.argv
        tail = supervisor.output_tail() if supervisor else []
        return pages.failed(problem, shlex.join(argv), tail)
    return pages.starting()


def _failed(
    method: str,
    service: Service,
    route: Forward,
    error: UpstreamError,
    exc: BaseException,
) -> web.Response:
    logger.warning(
        "%d for %s %s: %s (upstream %s)",
        error.status,
        method,
        route.path,
        _describe(exc),
        service.upstream.describe(),
    )
    return error_response(error)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
