"""Every rproxy setting as frozen dataclasses, built from command-line options and the environment.

``load_config`` is the one place where sources meet: a command-line value wins over the environment
(``JUPYTERHUB_SERVICE_PREFIX``), which wins over the default. Every value is validated here, so a
broken setting stops start-up with a ConfigError that names it; nothing later re-checks.
This module does not parse the command line (cli.py) and does not start anything.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from yarl import URL

from rproxy.errors import ConfigError
from rproxy.urls import normalize_prefix

HostHeader = Literal["preserve", "upstream"]
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


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait on the upstream; ``read`` is the idle gap between two chunks, no total."""

    connect: float = 10.0
    read: float = 300.0

    def __post_init__(self) -> None:
        for name in ("connect", "read"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} timeout must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class Config:
    """All settings of one rproxy instance."""

    upstream: Upstream
    prefix: str = "/"
    ip: str = "0.0.0.0"
    port: int = 8080
    timeouts: Timeouts = field(default_factory=Timeouts)
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    host_header: HostHeader = "preserve"
    upstream_connections: int = 0
    log_level: LogLevel = "INFO"

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port")
        if self.host_header not in get_args(HostHeader):
            raise ConfigError(f"--host-header {self.host_header!r}: expected preserve or upstream")
        if self.log_level not in get_args(LogLevel):
            raise ConfigError(
                f"--log-level {self.log_level!r}: expected one of {get_args(LogLevel)}"
            )
        if self.upstream_connections < 0:
            raise ConfigError("--upstream-connections must be 0 (no limit) or more")


def load_config(options: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """Build a Config from command-line ``options`` (None = not given) and ``environ``."""
    upstream_text = options.get("upstream")
    destport = options.get("destport")
    if upstream_text and destport is not None:
        raise ConfigError("give either --upstream or --destport, not both")
    if destport is not None:
        if not 0 < destport <= 65535:
            raise ConfigError(f"--destport {destport} is not a TCP port")
        upstream_text = f"http://127.0.0.1:{destport}"
    if not upstream_text:
        raise ConfigError("no upstream: give --upstream URL or --destport N")
    prefix = options.get("prefix")
    if prefix is None:
        prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    trusted = options.get("trusted_proxies")
    defaults = Timeouts()
    return Config(
        upstream=Upstream.parse(upstream_text),
        prefix=prefix,
        ip=_option(options, "ip", "0.0.0.0"),
        port=_option(options, "port", 8080),
        timeouts=Timeouts(
            connect=_option(options, "connect_timeout", defaults.connect),
            read=_option(options, "read_timeout", defaults.read),
        ),
        trusted_proxies=TrustedProxies.parse(trusted) if trusted else TrustedProxies(),
        host_header=_option(options, "host_header", "preserve"),
        upstream_connections=_option(options, "upstream_connections", 0),
        log_level=_option(options, "log_level", "INFO"),
    )


def _option(options: Mapping[str, Any], key: str, default: Any) -> Any:
    value = options.get(key)
    return default if value is None else value
