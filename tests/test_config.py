"""Configuration: sources (flags, environment, defaults), validation, and the CLI's error exit."""

from __future__ import annotations

import ipaddress

import pytest
from yarl import URL

from rproxy import cli
from rproxy.config import Config, TrustedProxies, Upstream
from rproxy.errors import ConfigError, PrefixError
from rproxy.sources import load_config

ENV_PREFIX = {"JUPYTERHUB_SERVICE_PREFIX": "/user/env/"}


def _parse(*argv: str, environ: dict[str, str] | None = None) -> Config:
    return cli.parse_config(list(argv), environ or {})


@pytest.mark.parametrize(
    ("argv", "environ", "prefix"),
    [
        pytest.param(["--prefix", "/user/flag/"], ENV_PREFIX, "/user/flag/", id="flag-wins"),
        pytest.param(["--prefix", "/"], ENV_PREFIX, "/", id="root-flag-wins"),
        pytest.param([], ENV_PREFIX, "/user/env/", id="env-used"),
        pytest.param([], {"JUPYTERHUB_SERVICE_PREFIX": "user/env"}, "/user/env/", id="env-normed"),
        pytest.param([], {}, "/", id="default"),
        pytest.param(["--prefix", "user/flag"], {}, "/user/flag/", id="flag-normalized"),
    ],
)
def test_prefix_sources(argv: list[str], environ: dict[str, str], prefix: str) -> None:
    assert _parse("--destport", "8888", *argv, environ=environ).prefix == prefix


def test_destport_means_local_upstream() -> None:
    config = _parse("--destport", "8888")
    assert config.upstream.url == URL("http://127.0.0.1:8888")
    assert config.upstream.unix_socket is None
    assert config.upstream == _parse("--upstream", "http://127.0.0.1:8888").upstream


def test_defaults() -> None:
    config = _parse("--destport", "8888")
    assert config.ip == "0.0.0.0"
    assert config.port == 8080
    assert config.timeouts.connect == 10.0
    assert config.timeouts.read == 300.0
    assert config.trusted_proxies == TrustedProxies()
    assert config.host_header == "preserve"
    assert config.upstream_connections == 0
    assert config.log_level == "INFO"


def test_flags_reach_config() -> None:
    config = _parse(
        "--upstream=http://127.0.0.1:9000",
        "--ip=127.0.0.1",
        "--port=0",
        "--connect-timeout=2.5",
        "--request-timeout=60",
        "--host-header=upstream",
        "--upstream-connections=16",
        "--log-level=debug",
    )
    assert config.ip == "127.0.0.1"
    assert config.port == 0
    assert config.timeouts.connect == 2.5
    assert config.timeouts.read == 60.0
    assert config.host_header == "upstream"
    assert config.upstream_connections == 16
    assert config.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        pytest.param(
            ["--upstream", "http://127.0.0.1:1", "--destport", "1"], "not both", id="both"
        ),
        pytest.param([], "nothing to proxy", id="neither"),
        pytest.param(["--destport", "0"], "--destport", id="destport-zero"),
        pytest.param(["--destport", "70000"], "--destport", id="destport-too-big"),
        pytest.param(["--destport", "8888", "--port", "70000"], "--port", id="port-too-big"),
        pytest.param(["--destport", "8888", "--port=-1"], "--port", id="port-negative"),
        pytest.param(
            ["--destport", "8888", "--upstream-connections=-1"],
            "--upstream-connections",
            id="negative-connections",
        ),
    ],
)
def test_invalid_options(argv: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(*argv)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("text", "url", "socket"),
    [
        pytest.param("http://127.0.0.1:8888", URL("http://127.0.0.1:8888"), None, id="http"),
        pytest.param("http://127.0.0.1:8888/", URL("http://127.0.0.1:8888"), None, id="slash"),
        pytest.param("https://app.internal", URL("https://app.internal"), None, id="https"),
        pytest.param("http://[::1]:8888", URL("http://[::1]:8888"), None, id="ipv6"),
        pytest.param("unix:/run/app.sock", URL("http://localhost"), "/run/app.sock", id="unix"),
    ],
)
def test_upstream_parse(text: str, url: URL, socket: str | None) -> None:
    upstream = Upstream.parse(text)
    assert upstream.url == url
    assert upstream.unix_socket == socket
    assert _parse("--upstream", text).upstream == upstream


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("ftp://127.0.0.1:21", id="ftp"),
        pytest.param("unix:run/app.sock", id="relative-unix"),
        pytest.param("unix:", id="empty-unix"),
        pytest.param("http://127.0.0.1:8888/app", id="path"),
        pytest.param("http://127.0.0.1:8888/?a=1", id="query"),
        pytest.param("http://127.0.0.1:8888?a=1", id="query-no-slash"),
        pytest.param("http://user:pw@127.0.0.1:8888", id="userinfo"),
        pytest.param("127.0.0.1:8888", id="no-scheme"),
        pytest.param("http://", id="no-host"),
        pytest.param("http://127.0.0.1:99999", id="bad-port"),
    ],
)
def test_upstream_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Upstream.parse(text)
    assert repr(text) in str(info.value)
    with pytest.raises(ConfigError):
        _parse("--upstream", text)


@pytest.mark.parametrize(
    "environ",
    [pytest.param({}, id="flag"), pytest.param(ENV_PREFIX, id="flag-over-env")],
)
def test_bad_prefix_flag(environ: dict[str, str]) -> None:
    with pytest.raises(PrefixError) as info:
        _parse("--destport", "8888", "--prefix", "/a b/", environ=environ)
    assert isinstance(info.value, ConfigError)
    assert "'/a b/'" in str(info.value)


def test_bad_prefix_env() -> None:
    with pytest.raises(PrefixError):
        _parse("--destport", "8888", environ={"JUPYTERHUB_SERVICE_PREFIX": "/a/../b/"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2", TrustedProxies(count=2), id="count"),
        pytest.param(
            "127.0.0.1,10.0.0.0/8",
            TrustedProxies(
                networks=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
            ),
            id="networks",
        ),
        pytest.param(
            " 10.0.0.0/8 , ::1 ",
            TrustedProxies(
                networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
            ),
            id="spaces-and-ipv6",
        ),
    ],
)
def test_trusted_proxies(text: str, expected: TrustedProxies) -> None:
    assert TrustedProxies.parse(text) == expected
    assert _parse("--destport", "8888", "--trusted-proxies", text).trusted_proxies == expected


def test_trusted_proxies_membership() -> None:
    trusted = TrustedProxies.parse("127.0.0.1,10.0.0.0/8")
    assert trusted.trusts("127.0.0.1")
    assert trusted.trusts("10.20.30.40")
    assert not trusted.trusts("127.0.0.2")
    assert not trusted.trusts("192.0.2.1")
    assert not trusted.trusts("not-an-address")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("10.0.0.300", id="octet-too-big"),
        pytest.param("10.0.0.0/33", id="mask-too-big"),
        pytest.param("proxy.example", id="hostname"),
        pytest.param("127.0.0.1,bogus", id="one-bad"),
    ],
)
def test_trusted_proxies_invalid(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse("--destport", "8888", "--trusted-proxies", text)
    assert "--trusted-proxies" in str(info.value)


@pytest.mark.parametrize("flag", ["--connect-timeout", "--request-timeout"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("0", id="zero"),
        pytest.param("-1", id="negative"),
        pytest.param("nan", id="nan"),
        pytest.param("inf", id="inf"),
    ],
)
def test_timeouts_invalid(flag: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse("--destport", "8888", f"{flag}={value}")
    assert "timeout" in str(info.value)


def test_load_config_treats_none_as_not_given() -> None:
    options = {
        "upstream": None,
        "destport": 8888,
        "prefix": None,
        "port": None,
        "ip": None,
        "connect_timeout": None,
        "request_timeout": None,
        "trusted_proxies": None,
    }
    config = load_config(options, ENV_PREFIX)
    assert config.prefix == "/user/env/"
    assert config.port == 8080
    assert config.timeouts.connect == 10.0


def test_config_is_frozen() -> None:
    config = _parse("--destport", "8888")
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


def test_main_reports_bad_prefix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    status = cli.main(["--destport", "8888", "--prefix", "/a b/"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.startswith("rproxy: error: ")
    assert "'/a b/'" in captured.err
    assert "' ' is not allowed" in captured.err
    assert captured.err.endswith("\n")


def test_main_reports_missing_upstream(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    status = cli.main([])
    assert status == 2
    assert capsys.readouterr().err.startswith("rproxy: error: nothing to proxy")
