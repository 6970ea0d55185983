"""Merge the command line, the TOML config file and the environment into one Config.

Precedence, highest first: a flag given on the command line, the ``--config`` file, the
environment (the JUPYTERHUB_* variables of ``ENVIRONMENT``, the only ones read here), the
defaults of config.py. The file's keys are the long option names with ``_`` for ``-``
(``ready_timeout = 30``) plus ``command = ["app", "--port", "{port}"]``; an unknown key or a value
of the wrong type is a ConfigError that names it. This module builds values; config.py checks them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from yarl import URL

from rproxy.config import (
    ChildConfig,
    Config,
    DesktopOptions,
    HubOptions,
    ServiceConfig,
    Timeouts,
    TrustedProxies,
    Upstream,
)
from rproxy.errors import ConfigError
from rproxy.rewriters.buffered import DEFAULT_MAX_BYTES
from rproxy.rewriters.registry import DEFAULT as DEFAULT_REWRITERS


class EnvVar(NamedTuple):
    """An environment variable load_config reads: what it means, the flags it gives a default."""

    name: str
    meaning: str
    flags: tuple[str, ...] = ()


# Every environment variable load_config reads, and only these (it reads through _environment).
ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("JUPYTERHUB_SERVICE_PREFIX", "the URL prefix the hub routes here", ("--prefix",)),
    EnvVar("JUPYTERHUB_SERVICE_URL", "where the hub expects this server to listen (JupyterHub 2+): "
           "its host and port", ("--ip", "--port")),
    EnvVar("JUPYTERHUB_API_TOKEN", "this server's hub API token; when set, --authtype defaults to "
           "oauth, and rproxy's cookies are signed with a key derived from it", ("--authtype",)),
    EnvVar("JUPYTERHUB_API_URL", "the hub API (needed by --authtype oauth)"),
    EnvVar("JUPYTERHUB_CLIENT_ID", "this server's OAuth client id (needed by --authtype oauth)"),
    EnvVar("JUPYTERHUB_OAUTH_CALLBACK_URL", "where the hub sends a browser back after login "
           "(default: {prefix}oauth_callback)"),
    EnvVar("JUPYTERHUB_BASE_URL", "the hub's base URL (/)"),
    EnvVar("JUPYTERHUB_HOST", "the hub's host, when servers live on subdomains"),
    EnvVar("JUPYTERHUB_USER", "the server's owner, who may use it (when no scopes are given)"),
    EnvVar("JUPYTERHUB_GROUP", "a group whose members may use it too"),
    EnvVar("JUPYTERHUB_ANYONE", "1: every hub user may use it"),
    EnvVar("JUPYTERHUB_SERVER_NAME", "the server's name, in activity reports"),
    EnvVar("JUPYTERHUB_ACTIVITY_URL", "where activity is reported every --last-activity-interval "
           "seconds"),
    EnvVar("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "JSON list of the scopes that grant access"),
    EnvVar("JUPYTERHUB_OAUTH_SCOPES", "the same, from older hubs: read when "
           "JUPYTERHUB_OAUTH_ACCESS_SCOPES is not set"),
    EnvVar("JUPYTERHUB_SSL_KEYFILE", "internal TLS: this server's key"),
    EnvVar("JUPYTERHUB_SSL_CERTFILE", "internal TLS: this server's certificate; rproxy then serves "
           "HTTPS"),
    EnvVar("JUPYTERHUB_SSL_CLIENT_CA", "internal TLS: the CA that clients' certificates (required "
           "then) and the hub's are checked against"),
)  # fmt: skip

_NUMBER = (int, float)
FILE_KEYS: dict[str, tuple[type, ...]] = {
    "upstream": (str,),
    "destport": (int,),
    "ip": (str,),
    "port": (int,),
    "prefix": (str,),
    "strip_prefix": (bool,),
    "trusted_proxies": (str, int, list),
    "host_header": (str,),
    "upstream_connections": (int,),
    "connect_timeout": _NUMBER,
    "request_timeout": _NUMBER,
    "client_timeout": _NUMBER,
    "websocket_max_message_size": (int,),
    "websocket_heartbeat": _NUMBER,
    "log_level": (str,),
    "debug": (bool,),
    "command": (list,),
    "unix_socket": (bool,),
    "ready_check_path": (str,),
    "ready_timeout": _NUMBER,
    "restart": (bool,),
    "restart_backoff_max": _NUMBER,
    "grace_period": _NUMBER,
    "workers": (int,),
    "rewriters": (list,),
    "no_rewrite": (bool,),
    "rewrite_max_bytes": (int,),
    "max_body_size": (int,),
    "logs": (bool,),
    "presentation_path": (str,),
    "repo": (str,),
    "repobranch": (str,),
    "repofolder": (str,),
    "conda_env": (str,),
    "authtype": (str,),
    "last_activity_interval": (int,),
    "force_alive": (bool,),
    "hub_cache_seconds": (int,),
    "forward_user_info": (bool,),
    "query_user_info": (bool,),
    "progressive": (bool,),
    "api_prefix": (str,),
    "no_api": (bool,),
    "server_timing": (bool,),
    "slow_request_ms": _NUMBER,
    "vnc_upstream": (str,),
    "desktop": (bool,),
    "desktop_geometry": (str,),
    "desktop_depth": (int,),
    "vnc_path": (str,),
    "novnc_dir": (str,),
    "services": (list,),
}
# The keys of a [[services]] table: its own, and the command settings a child takes.
SERVICE_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "path": (str,),
    "upstream": (str,),
    "command": (list,),
    "vnc": (str,),
    "desktop": (bool,),
    "desktop_geometry": (str,),
    "desktop_depth": (int,),
    "strip_path": (bool,),
    "rewriters": (list,),
    "description": (str,),
    "required": (bool,),
    "start": (str,),
    **{key: FILE_KEYS[key] for key in (
        "destport", "unix_socket", "ready_check_path", "ready_timeout", "restart",
        "restart_backoff_max", "logs", "repo", "repobranch", "repofolder", "conda_env",
    )},
}  # fmt: skip


def read_config_file(path: str) -> dict[str, Any]:
    """The checked contents of a TOML config file."""
    try:
        with Path(path).open("rb") as file:
            values = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"--config {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path!r} is not valid TOML: {exc}") from None
    _check(values, FILE_KEYS, f"--config {path!r}")
    for number, table in enumerate(values.get("services", ()), 1):
        if not isinstance(table, dict):
            raise ConfigError(f"--config {path!r}: services must be tables ([[services]])")
        _check(table, SERVICE_KEYS, f"--config {path!r}: service {number}")
    return values


def _check(values: Mapping[str, Any], keys: Mapping[str, tuple[type, ...]], where: str) -> None:
    for key, value in values.items():
        expected = keys.get(key)
        if expected is None:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        if isinstance(value, bool) != (bool in expected) or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in expected)
            raise ConfigError(f"{where}: {key} must be {names}, not {value!r}")
        if key == "services" or not isinstance(value, list):
            continue
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: {key} must be a list of strings")


def load_config(
    options: Mapping[str, Any], environ: Mapping[str, str], file: Mapping[str, Any] | None = None
) -> Config:
    """Build a Config from command-line ``options`` (None = not given), ``file`` and ``environ``."""
    env = _environment(environ)
    given = {**(file or {}), **{k: v for k, v in options.items() if v is not None}}

    def get(key: str, default: Any) -> Any:
        value = given.get(key)
        return default if value is None else value

    command = tuple(given.get("command") or ())
    upstream_text = given.get("upstream")
    destport = given.get("destport")
    if not command and destport is not None:
        if upstream_text:
            raise ConfigError("give either --upstream or --destport, not both")
        if not 0 < destport <= 65535:
            raise ConfigError(
                f"--destport {destport}: without a command to run, give the port of a running "
                "server (0, a free port, only makes sense for a command)"
            )
        upstream_text = f"http://127.0.0.1:{destport}"
    timeouts = Timeouts()
    trusted = given.get("trusted_proxies")
    if isinstance(trusted, list):
        trusted = ",".join(trusted)
    desktop = None
    if given.get("desktop"):
        desktop = DesktopOptions(
            geometry=get("desktop_geometry", "1280x800"),
            depth=get("desktop_depth", 24),
            app=command,
            ready_timeout=get("ready_timeout", 30.0),
        )
        command = ()
    return Config(
        upstream=Upstream.parse(upstream_text) if upstream_text else None,
        child=_child(command, given) if command else None,
        desktop=desktop,
        prefix=get("prefix", env["JUPYTERHUB_SERVICE_PREFIX"] or "/"),
        strip_prefix=get("strip_prefix", True),
        ip=given.get("ip") or _service_url(env).host or "0.0.0.0",
        port=_port(given, env),
        timeouts=Timeouts(
            connect=get("connect_timeout", timeouts.connect),
            read=get("request_timeout", timeouts.read),
            client=get("client_timeout", timeouts.client),
        ),
        trusted_proxies=TrustedProxies.parse(str(trusted)) if trusted else TrustedProxies(),
        host_header=get("host_header", "preserve"),
        upstream_connections=get("upstream_connections", 0),
        websocket_max_message_size=get("websocket_max_message_size", 64 * 1024 * 1024),
        websocket_heartbeat=given.get("websocket_heartbeat"),
        grace_period=get("grace_period", 10.0),
        workers=get("workers", 1),
        rewriters=rewriter_names(given),
        rewrite_max_bytes=get("rewrite_max_bytes", DEFAULT_MAX_BYTES),
        max_body_size=get("max_body_size", 0),
        hub=_hub(given, env),
        api_prefix=None
        if given.get("no_api")
        else get("api_prefix", "api" if get("strip_prefix", True) else "_rproxy/api"),
        server_timing=get("server_timing", False),
        slow_request_ms=get("slow_request_ms", 0.0),
        vnc_upstream=given.get("vnc_upstream"),
        vnc_path=get("vnc_path", "websockify"),
        novnc_dir=get("novnc_dir", "/usr/share/novnc"),
        log_level=_log_level(options) or _log_level(file or {}) or "INFO",
        services=tuple(_service(table) for table in given.get("services") or ())
        + tuple(_service(_shorthand(text)) for text in given.get("service") or ()),
    )


def _shorthand(text: str) -> dict[str, Any]:
    """``--service PATH=URL`` as the [[services]] table it stands for, named after its path."""
    path, _, url = text.partition("=")
    if not path.strip("/") or not url:
        raise ConfigError(
            f"--service {text!r}: give PATH=URL, such as /docs/=http://127.0.0.1:9000"
        )
    name = re.sub(r"[^a-z0-9_-]+", "-", path.strip("/").lower()).strip("-") or "service"
    return {"name": name, "path": path, "upstream": url}


def _service(table: Mapping[str, Any]) -> ServiceConfig:
    """One [[services]] table; its command settings have the same names as the options."""
    for key in ("name", "path"):
        if key not in table:
            raise ConfigError(f"a service without a {key}: {dict(table)!r}")
    start = table.get("start", "launch")
    if start not in ("launch", "request"):
        raise ConfigError(f"service {table['name']!r}: start = {start!r}: launch or request")
    command = tuple(table.get("command") or ())
    rewriters = table.get("rewriters")
    desktop = None
    if table.get("desktop"):
        desktop = DesktopOptions(
            geometry=table.get("desktop_geometry", "1280x800"),
            depth=table.get("desktop_depth", 24),
            app=command,
            ready_timeout=table.get("ready_timeout", 30.0),
        )
        command = ()
    return ServiceConfig(
        name=table["name"],
        path=table["path"],
        upstream=Upstream.parse(table["upstream"]) if table.get("upstream") else None,
        child=_child(command, table) if command else None,
        vnc=table.get("vnc"),
        desktop=desktop,
        strip_path=table.get("strip_path", True),
        rewriters=None if rewriters is None else tuple(rewriters),
        description=table.get("description", ""),
        required=table.get("required", True),
        start_on_request=start == "request",
    )


def _child(command: tuple[str, ...], given: Mapping[str, Any]) -> ChildConfig:
    """The ChildConfig: its settings have the same names as their options."""
    names = {f.name for f in dataclasses.fields(ChildConfig)} - {"argv"}
    return ChildConfig(argv=command, **{n: given[n] for n in names if given.get(n) is not None})


def rewriter_names(given: Mapping[str, Any]) -> tuple[str, ...]:
    """The enabled rewriters, in order, from the merged options (file values under flags)."""
    if given.get("no_rewrite"):
        return ()
    names = given.get("rewriters")
    if names is None:
        return DEFAULT_REWRITERS
    if isinstance(names, str):
        names = names.split(",")
    return tuple(name.strip() for name in names if name.strip())


def _log_level(source: Mapping[str, Any]) -> Any:
    """``log_level`` or ``debug`` from one source; ``--log-level`` beats ``--debug`` within it."""
    level = source.get("log_level")
    if isinstance(level, str):
        return level.upper()
    return "DEBUG" if source.get("debug") else None


def _environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ENVIRONMENT ("" when unset): the only ones load_config may read."""
    return {var.name: environ.get(var.name, "") for var in ENVIRONMENT}


def _service_url(env: Mapping[str, str]) -> URL:
    """JUPYTERHUB_SERVICE_URL (JupyterHub 2+): where the hub expects this server to listen."""
    text = env["JUPYTERHUB_SERVICE_URL"]
    try:
        url = URL(text)
        url.explicit_port  # noqa: B018 (raises for a port that is not a number)
    except ValueError:
        raise ConfigError(f"JUPYTERHUB_SERVICE_URL {text!r} is not a URL") from None
    return url


def _port(given: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """``--port``, else the port of JUPYTERHUB_SERVICE_URL, else 8080."""
    if given.get("port") is not None:
        return given["port"]
    port = _service_url(env).explicit_port
    return 8080 if port is None else port


def _hub(given: Mapping[str, Any], env: Mapping[str, str]) -> HubOptions:
    """The hub options: flags and file first, then what JupyterHub put in the environment."""

    def get(key: str, default: Any) -> Any:
        value = given.get(key)
        return default if value is None else value

    scopes = env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"] or env["JUPYTERHUB_OAUTH_SCOPES"]
    try:
        access_scopes = json.loads(scopes) if scopes else []
    except ValueError:
        raise ConfigError(f"JUPYTERHUB_OAUTH_ACCESS_SCOPES {scopes!r} is not JSON") from None
    if not isinstance(access_scopes, list) or not all(isinstance(s, str) for s in access_scopes):
        raise ConfigError("JUPYTERHUB_OAUTH_ACCESS_SCOPES must be a JSON list of strings")
    return HubOptions(
        authtype=get("authtype", "oauth" if env["JUPYTERHUB_API_TOKEN"] else "none"),
        last_activity_interval=get("last_activity_interval", 300),
        force_alive=get("force_alive", True),
        hub_cache_seconds=get("hub_cache_seconds", 300),
        forward_user_info=get("forward_user_info", False),
        query_user_info=get("query_user_info", False),
        api_token=env["JUPYTERHUB_API_TOKEN"],
        api_url=env["JUPYTERHUB_API_URL"],
        client_id=env["JUPYTERHUB_CLIENT_ID"],
        callback_url=env["JUPYTERHUB_OAUTH_CALLBACK_URL"],
        hub_base_url=env["JUPYTERHUB_BASE_URL"] or "/",
        hub_host=env["JUPYTERHUB_HOST"],
        user=env["JUPYTERHUB_USER"],
        group=env["JUPYTERHUB_GROUP"],
        anyone=env["JUPYTERHUB_ANYONE"] == "1",
        server_name=env["JUPYTERHUB_SERVER_NAME"],
        activity_url=env["JUPYTERHUB_ACTIVITY_URL"],
        access_scopes=tuple(access_scopes),
        ssl_keyfile=env["JUPYTERHUB_SSL_KEYFILE"],
        ssl_certfile=env["JUPYTERHUB_SSL_CERTFILE"],
        ssl_client_ca=env["JUPYTERHUB_SSL_CLIENT_CA"],
    )
