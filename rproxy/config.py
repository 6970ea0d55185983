"""Every rproxy setting as frozen dataclasses, each validated when it is built.

A broken setting stops start-up with a ConfigError that names it; nothing later re-checks.
Where the values come from (flags, TOML file, environment) is sources.py's business; this module
parses no command line and starts nothing.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from yarl import URL

from rproxy.errors import ConfigError
from rproxy.rewriters.buffered import DEFAULT_MAX_BYTES
from rproxy.urls import normalize_prefix

HostHeader = Literal["preserve", "upstream"]
AuthType = Literal["oauth", "none"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where requests go: an HTTP origin, or a Unix socket spoken to as ``http://localhost``."""

    url: URL
    unix_socket: str | None = None

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """Parse ``http://host:port``, ``https://host:port`` or ``unix:/path/to.sock``."""
        if text.startswith("unix:"):
            path = text.removeprefix("unix:")
            if not path.startswith("/"):
                raise ConfigError(f"--upstream {text!r}: a Unix socket path must be absolute")
            return cls(URL("http://localhost"), path)
        try:
            url = URL(text)
        except ValueError as exc:
            raise ConfigError(f"--upstream {text!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"--upstream {text!r}: expected http://host:port, https://host:port "
                "or unix:/path/to.sock"
            )
        if url.raw_path not in ("", "/") or url.raw_query_string or url.user:
            raise ConfigError(f"--upstream {text!r}: give an origin only, without path or query")
        return cls(url.origin())

    def describe(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else str(self.url)


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """Which incoming X-Forwarded-* headers to believe.

    ``count`` trusts the nearest N proxies whatever their address; ``networks`` trusts every hop
    whose address is inside one of them. By default nothing incoming is trusted.
    """

    count: int = 0
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """Parse a count (``2``) or a comma-separated list of addresses and networks."""
        text = text.strip()
        if text.isdigit():
            return cls(count=int(text))
        try:
            networks = tuple(
                ipaddress.ip_network(part.strip(), strict=False)
                for part in text.split(",")
                if part.strip()
            )
        except ValueError as exc:
            raise ConfigError(f"--trusted-proxies {text!r}: {exc}") from None
        return cls(networks=networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def _positive(name: str, value: float, *, zero_ok: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait: on the upstream, ``read`` being the idle gap between two chunks (no total);
    and on a client (``client``: idle keep-alive, request head, stalled upload or download)."""

    connect: float = 10.0
    read: float = 300.0
    client: float = 75.0

    def __post_init__(self) -> None:
        _positive("--connect-timeout", self.connect)
        _positive("--request-timeout", self.read)
        _positive("--client-timeout", self.client)


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """The wrapped command and how to supervise it; ``argv`` still holds its placeholders."""

    argv: tuple[str, ...]
    destport: int = 0
    unix_socket: bool = False
    ready_check_path: str = "/"
    ready_timeout: float = 10.0
    restart: bool = True
    restart_backoff_max: float = 30.0
    logs: bool = True
    presentation_path: str = ""
    repo: str = ""
    repobranch: str = "master"
    repofolder: str = "."
    conda_env: str = ""

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise ConfigError("the command to run is empty")
        if not 0 <= self.destport <= 65535:
            raise ConfigError(f"--destport {self.destport} is not a TCP port")
        if self.unix_socket and self.destport:
            raise ConfigError("give either --unix-socket or --destport for the command, not both")
        if not self.ready_check_path.startswith("/"):
            raise ConfigError(f"--ready-check-path {self.ready_check_path!r} must start with /")
        _positive("--ready-timeout", self.ready_timeout)
        _positive("--restart-backoff-max", self.restart_backoff_max)


@dataclass(frozen=True, slots=True)
class HubOptions:
    """JupyterHub settings: jhsingle-native-proxy's options and what the hub's environment says.

    The environment is read by sources.py (JUPYTERHUB_*); the hub plugin uses these values.
    """

    authtype: AuthType = "none"
    last_activity_interval: int = 300
    force_alive: bool = True
    hub_cache_seconds: int = 300  # how long the hub's answer about a token is trusted
    forward_user_info: bool = False
    query_user_info: bool = False
    api_token: str = field(default="", repr=False)  # JUPYTERHUB_API_TOKEN: a secret
    api_url: str = ""  # JUPYTERHUB_API_URL
    client_id: str = ""  # JUPYTERHUB_CLIENT_ID
    callback_url: str = ""  # JUPYTERHUB_OAUTH_CALLBACK_URL
    hub_base_url: str = "/"  # JUPYTERHUB_BASE_URL
    hub_host: str = ""  # JUPYTERHUB_HOST, when servers live on subdomains
    user: str = ""  # JUPYTERHUB_USER
    group: str = ""  # JUPYTERHUB_GROUP: its members may use this server too
    anyone: bool = False  # JUPYTERHUB_ANYONE=1: every hub user may
    server_name: str = ""  # JUPYTERHUB_SERVER_NAME
    activity_url: str = ""  # JUPYTERHUB_ACTIVITY_URL
    access_scopes: tuple[str, ...] = ()  # JUPYTERHUB_OAUTH_ACCESS_SCOPES
    ssl_keyfile: str = ""  # JUPYTERHUB_SSL_KEYFILE / CERTFILE / CLIENT_CA: internal TLS
    ssl_certfile: str = ""
    ssl_client_ca: str = ""

    def __post_init__(self) -> None:
        if self.authtype not in get_args(AuthType):
            raise ConfigError(f"--authtype {self.authtype!r}: expected oauth or none")
        _positive("--last-activity-interval", self.last_activity_interval, zero_ok=True)
        _positive("--hub-cache-seconds", self.hub_cache_seconds, zero_ok=True)
        if self.authtype != "oauth":
            return
        missing = [
            name
            for name, value in (
                ("JUPYTERHUB_API_TOKEN", self.api_token),
                ("JUPYTERHUB_API_URL", self.api_url),
                ("JUPYTERHUB_CLIENT_ID", self.client_id),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"--authtype oauth needs the environment JupyterHub gives its servers; "
                f"{', '.join(missing)} not set. Start rproxy from a JupyterHub spawner, or pass "
                "--authtype none to serve without authentication."
            )
        if bool(self.ssl_keyfile) != bool(self.ssl_certfile):
            raise ConfigError("JUPYTERHUB_SSL_KEYFILE and JUPYTERHUB_SSL_CERTFILE go together")


@dataclass(frozen=True, slots=True)
class DesktopOptions:
    """``--desktop``: the VNC server rproxy starts, and the X app it runs on it."""

    geometry: str = "1280x800"
    depth: int = 24
    app: tuple[str, ...] = ()
    ready_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[1-9]\d{1,4}x[1-9]\d{1,4}", self.geometry):
            raise ConfigError(f"--desktop-geometry {self.geometry!r}: give WIDTHxHEIGHT, 1280x800")
        if self.depth not in (16, 24, 32):
            raise ConfigError(f"--desktop-depth {self.depth}: 16, 24 or 32")
        _positive("--ready-timeout", self.ready_timeout)


_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One more service behind the same front door: ``[[services]]`` in the config file.

    It is mounted at ``path`` under the prefix (never at its root, which is the main upstream's)
    and is one of: an ``upstream`` already running, a ``child`` command rproxy runs, or a ``vnc``
    server (``host:port`` or a socket path) that its WebSocket bridge and noVNC reach, or a
    ``desktop`` rproxy starts (Xvnc on a private socket, with the command as its X app).
    """

    name: str
    path: str
    upstream: Upstream | None = None
    child: ChildConfig | None = None
    vnc: str | None = None
    desktop: DesktopOptions | None = None  # rproxy starts Xvnc, and the command as its X app
    strip_path: bool = True  # False: the service sees the whole public path, mount included
    rewriters: tuple[str, ...] | None = None  # None: the main rewriters
    description: str = ""
    required: bool = True  # api/status is 200 only when every required service is ready
    start_on_request: bool = False  # start the command on the first request, not at launch

    def __post_init__(self) -> None:
        if not _SERVICE_NAME.fullmatch(self.name) or self.name == "default":
            raise ConfigError(
                f"service name {self.name!r}: lower-case letters, digits, - and _ "
                '("default" is the main upstream\'s)'
            )
        try:
            path = normalize_prefix(self.path)
        except ConfigError as exc:
            raise ConfigError(f"service {self.name!r}: {exc}") from None
        if path == "/":
            raise ConfigError(f"service {self.name!r}: its path must not be /, the main upstream's")
        object.__setattr__(self, "path", path)
        kinds = [self.upstream, self.child, self.vnc, self.desktop]
        if sum(kind is not None for kind in kinds) != 1:
            raise ConfigError(
                f"service {self.name!r}: give one of upstream, command, vnc or desktop"
            )
        if self.vnc is not None:
            _vnc_upstream(self.vnc)
        if self.start_on_request and self.child is None:
            raise ConfigError(f'service {self.name!r}: start = "request" needs a command')


@dataclass(frozen=True, slots=True)
class Config:
    """All settings of one rproxy instance: either ``upstream`` or ``child`` is set."""

    upstream: Upstream | None = None
    child: ChildConfig | None = None
    prefix: str = "/"
    strip_prefix: bool = True  # False: the main app sees the whole public path, prefix included
    ip: str = "0.0.0.0"
    port: int = 8080
    timeouts: Timeouts = field(default_factory=Timeouts)
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    host_header: HostHeader = "preserve"
    upstream_connections: int = 0
    websocket_max_message_size: int = 64 * 1024 * 1024
    websocket_heartbeat: float | None = None
    grace_period: float = 10.0
    workers: int = 1
    rewriters: tuple[str, ...] = ("headers", "css", "html")
    rewrite_max_bytes: int = DEFAULT_MAX_BYTES
    max_body_size: int = 0  # bytes of a request body; 0: no limit
    hub: HubOptions = field(default_factory=HubOptions)
    api_prefix: str | None = "api"  # None: no API endpoints
    server_timing: bool = False
    slow_request_ms: float = 0.0  # 0: no slow-request log
    desktop: DesktopOptions | None = None  # --desktop: rproxy runs a VNC server and an X app
    vnc_upstream: str | None = None  # host:port or a Unix socket path: the VNC bridge's target
    vnc_path: str = "websockify"
    novnc_dir: str = "/usr/share/novnc"
    log_level: LogLevel = "INFO"
    services: tuple[ServiceConfig, ...] = ()  # more upstreams, each under its own path

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))
        for kind in ("name", "path"):
            seen = [getattr(service, kind) for service in self.services]
            if twice := {value for value in seen if seen.count(value) > 1}:
                raise ConfigError(f"two services have the same {kind}: {sorted(twice)[0]!r}")
        if self.desktop is not None:
            if self.upstream is not None or self.child is not None or self.vnc_upstream:
                raise ConfigError(
                    "--desktop runs its own VNC server and the command on it; it takes no "
                    "--upstream, --destport or --vnc-upstream"
                )
        elif (self.upstream is None) == (self.child is None):
            raise ConfigError(
                "give either an upstream (--upstream URL, or --destport N without a command) "
                "or a command to run, not both"
                if self.upstream
                else "nothing to proxy: give --upstream URL, --destport N or a command to run"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port")
        if self.host_header not in get_args(HostHeader):
            raise ConfigError(f"--host-header {self.host_header!r}: expected preserve or upstream")
        if self.log_level not in get_args(LogLevel):
            raise ConfigError(f"--log-level {self.log_level!r} is not a log level")
        if self.upstream_connections < 0:
            raise ConfigError("--upstream-connections must be 0 (no limit) or more")
        _positive("--grace-period", self.grace_period)
        if self.max_body_size < 0:
            raise ConfigError("--max-body-size must be 0 (no limit) or more bytes")
        if self.rewrite_max_bytes < 0:
            raise ConfigError("--rewrite-max-bytes must be 0 or more")
        if self.workers < 1:
            raise ConfigError("--workers must be 1 or more")
        if self.websocket_max_message_size < 0:
            raise ConfigError("--websocket-max-message-size must be 0 (no limit) or more bytes")
        if self.websocket_heartbeat is not None:
            _positive("--websocket-heartbeat", self.websocket_heartbeat)
        if self.api_prefix is not None:
            object.__setattr__(self, "api_prefix", _api_prefix(self.api_prefix))
        if not math.isfinite(self.slow_request_ms) or self.slow_request_ms < 0:
            raise ConfigError("--slow-request-ms must be 0 (off) or more")
        if self.vnc_upstream is not None:
            _vnc_upstream(self.vnc_upstream)
        object.__setattr__(self, "vnc_path", _api_prefix(self.vnc_path, "--vnc-path"))
        self._no_service_shadows_rproxys_own_paths()

    def _no_service_shadows_rproxys_own_paths(self) -> None:
        """A service mounted over a path rproxy answers itself would never get that path."""
        own: list[tuple[str, str, str]] = []  # (path under the prefix, whose, option to move it)
        if self.api_prefix is not None:
            api = ("rproxy's API", "--api-prefix or --no-api")
            own += [(path, *api) for path in api_paths(self.api_prefix)]
        if self.vnc_upstream is not None or self.desktop is not None:
            vnc = ("the VNC bridge", "--vnc-path")
            own += [("/" + self.vnc_path, *vnc), ("/vnc", "the noVNC client", "")]
        for service in self.services:
            for path, whose, option in own:
                if (path + "/").startswith(service.path) or (
                    path == "/vnc" and service.path.startswith("/vnc/")
                ):
                    raise ConfigError(
                        f"service {service.name!r}: its path {service.path} covers {path}, "
                        f"which {whose} answers under the prefix; give the service another "
                        f"path{f', or move {whose} ({option})' if option else ''}"
                    )


def api_paths(api_prefix: str) -> tuple[str, str, str, str, str]:
    """The paths rproxy's API answers (GET and HEAD) under the prefix: the overview, status,
    user, services and metrics."""
    base = "/" + api_prefix
    return base, base + "/status", base + "/user", base + "/services", base + "/metrics"


_API_SEGMENT = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*")


def _api_prefix(text: str, option: str = "--api-prefix") -> str:
    """``api`` or ``_rproxy/api``: path segments under the prefix, without surrounding slashes."""
    segments = text.strip("/").split("/")
    if not all(_API_SEGMENT.fullmatch(s) and s.strip(".") for s in segments):
        raise ConfigError(
            f"{option} {text!r}: give path segments of letters, digits and - . _ ~ "
            "(such as api or _rproxy/api)"
        )
    return "/".join(segments)


def _vnc_upstream(text: str) -> None:
    """``host:port``, ``unix:/path`` or ``/path``."""
    if text.startswith(("/", "unix:/")):
        return
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(
            f"--vnc-upstream {text!r}: give host:port (127.0.0.1:5901) or a socket path"
        )
