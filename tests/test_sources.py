"""Where settings come from: flags, then the --config TOML file, then the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from yarl import URL

from rproxy.cli import parse_config
from rproxy.config import ChildConfig, Config, TrustedProxies
from rproxy.errors import ConfigError

FILE = """\
port = 9000
prefix = "/from-file/"
command = ["python3", "-m", "http.server", "{port}"]
ready_timeout = 20
"""


def _write(tmp_path: Path, text: str, name: str = "rproxy.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _load(path: str, *argv: str, environ: dict[str, str] | None = None) -> Config:
    return parse_config(["--config", path, *argv], environ or {})


def _child(config: Config) -> ChildConfig:
    assert config.upstream is None
    assert config.child is not None
    return config.child


def test_file_values_are_used(tmp_path: Path) -> None:
    config = _load(_write(tmp_path, FILE))
    child = _child(config)
    assert config.port == 9000
    assert config.prefix == "/from-file/"
    assert child.argv == ("python3", "-m", "http.server", "{port}")
    assert child.ready_timeout == 20
    assert child.destport == 0
    assert config.ip == "0.0.0.0"
    assert config.log_level == "INFO"


def test_flag_overrides_file(tmp_path: Path) -> None:
    config = _load(_write(tmp_path, FILE), "--port", "9100", "--ready-timeout", "5")
    assert config.port == 9100
    assert _child(config).ready_timeout == 5
    assert config.prefix == "/from-file/"


def test_command_on_the_command_line_overrides_the_files(tmp_path: Path) -> None:
    config = _load(_write(tmp_path, FILE), "--", "app", "--bind", "{port}")
    assert _child(config).argv == ("app", "--bind", "{port}")
    assert config.port == 9000


@pytest.mark.parametrize(
    ("file_value", "flag", "expected"),
    [
        pytest.param("false", "--restart", True, id="restart-flag-beats-file-false"),
        pytest.param("true", "--no-restart", False, id="no-restart-flag-beats-file-true"),
    ],
)
def test_negative_flag_overrides_file(
    tmp_path: Path, file_value: str, flag: str, expected: bool
) -> None:
    config = _load(_write(tmp_path, f"{FILE}restart = {file_value}\n"), flag)
    assert _child(config).restart is expected


def test_file_overrides_environment(tmp_path: Path) -> None:
    environ = {
        "JUPYTERHUB_SERVICE_PREFIX": "/from-env/",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:8888/from-env/",
    }
    config = _load(_write(tmp_path, FILE), environ=environ)
    assert config.prefix == "/from-file/"
    assert config.port == 9000


def test_environment_fills_what_the_file_leaves_out(tmp_path: Path) -> None:
    environ = {
        "JUPYTERHUB_SERVICE_PREFIX": "/from-env/",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:8888/from-env/",
    }
    config = _load(_write(tmp_path, 'command = ["app"]\n'), environ=environ)
    assert config.prefix == "/from-env/"
    assert config.port == 8888


def test_flag_overrides_file_and_environment(tmp_path: Path) -> None:
    config = _load(
        _write(tmp_path, FILE),
        "--prefix",
        "/from-flag/",
        environ={"JUPYTERHUB_SERVICE_PREFIX": "/from-env/"},
    )
    assert config.prefix == "/from-flag/"


def test_file_authtype_none_overrides_the_hub_token_default(tmp_path: Path) -> None:
    config = _load(
        _write(tmp_path, f'{FILE}authtype = "none"\n'),
        environ={"JUPYTERHUB_API_TOKEN": "secret"},
    )
    assert config.hub.authtype == "none"


def test_file_upstream_unix_socket_without_command(tmp_path: Path) -> None:
    config = _load(_write(tmp_path, 'upstream = "unix:/tmp/x.sock"\n'))
    assert config.child is None
    assert config.upstream is not None
    assert config.upstream.unix_socket == "/tmp/x.sock"
    assert config.upstream.url == URL("http://localhost")


def test_file_destport_without_command_is_a_local_upstream(tmp_path: Path) -> None:
    config = _load(_write(tmp_path, "destport = 8888\n"))
    assert config.child is None
    assert config.upstream is not None
    assert config.upstream.url == URL("http://127.0.0.1:8888")


def test_file_other_settings(tmp_path: Path) -> None:
    config = _load(
        _write(
            tmp_path,
            FILE
            + 'ready_check_path = "/health"\n'
            + "request_timeout = 30.5\n"
            + "force_alive = false\n"
            + "logs = false\n"
            + 'trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]\n'
            + 'presentation_path = "./P.ipynb"\n',
        )
    )
    child = _child(config)
    assert child.ready_check_path == "/health"
    assert config.timeouts.read == 30.5
    assert config.hub.force_alive is False
    assert child.logs is False
    assert child.presentation_path == "./P.ipynb"
    assert config.trusted_proxies == TrustedProxies.parse("10.0.0.0/8,127.0.0.1")


def test_debug_flag_overrides_file_log_level(tmp_path: Path) -> None:
    """Flags come before the file: --debug on the command line beats the file's log_level."""
    config = _load(_write(tmp_path, f'{FILE}log_level = "WARNING"\n'), "--debug")
    assert config.log_level == "DEBUG"


def test_ip_and_port_flags_make_a_broken_service_url_irrelevant(tmp_path: Path) -> None:
    """JUPYTERHUB_SERVICE_URL only supplies the default address; with both flags it is unused."""
    config = _load(
        _write(tmp_path, 'command = ["app"]\n'),
        "--port",
        "9100",
        "--ip",
        "127.0.0.1",
        environ={"JUPYTERHUB_SERVICE_URL": "http://[bad/"},
    )
    assert (config.ip, config.port) == ("127.0.0.1", 9100)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{FILE}colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour") as info:
        _load(path)
    assert path in str(info.value)


def test_dashed_key_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ready-timeout"):
        _load(_write(tmp_path, 'command = ["app"]\n"ready-timeout" = 5\n'))


@pytest.mark.parametrize(
    ("line", "key"),
    [
        pytest.param('port = "80"', "port", id="port-string"),
        pytest.param("port = 80.0", "port", id="port-float"),
        pytest.param("port = true", "port", id="port-bool"),
        pytest.param("restart = 1", "restart", id="restart-int"),
        pytest.param('restart = "yes"', "restart", id="restart-string"),
        pytest.param("ready_timeout = true", "ready_timeout", id="ready-timeout-bool"),
        pytest.param('ready_timeout = "20"', "ready_timeout", id="ready-timeout-string"),
        pytest.param('command = "x"', "command", id="command-string"),
        pytest.param("command = [1]", "command", id="command-int-item"),
        pytest.param('command = ["x", 1]', "command", id="command-mixed"),
        pytest.param("prefix = ['/a/']", "prefix", id="prefix-list"),
    ],
)
def test_wrong_type_is_named(tmp_path: Path, line: str, key: str) -> None:
    path = _write(tmp_path, f"{line}\n")
    with pytest.raises(ConfigError, match=key) as info:
        _load(path, "app")
    assert path in str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "port = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        _load(path)
    assert path in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as info:
        _load(path, "app")
    assert path in str(info.value)


def test_invalid_value_in_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--port 70000"):
        _load(_write(tmp_path, 'port = 70000\ncommand = ["app"]\n'))
