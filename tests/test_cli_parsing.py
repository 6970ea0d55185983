"""The jhsingle-native-proxy README's command lines parse through rproxy with the same meaning."""

from __future__ import annotations

import shlex

import pytest

from rproxy import command
from rproxy.cli import parse_config
from rproxy.config import ChildConfig, Config
from rproxy.errors import ConfigError

STREAMLIT_FIXED = (
    "--port 8000 --destport 8505 streamlit hello {--}server.port {port} {--}server.headless True "
    "{--}server.enableCORS False --ip 0.0.0.0"
)
VOILA = (
    "--destport 0 voila ./Presentation.ipynb {--}port={port} {--}no-browser "
    "{--}Voila.server_url=/ {--}Voila.base_url={base_url}/ {--}debug"
)
VOILA_ARGV = (
    "voila",
    "./Presentation.ipynb",
    "{--}port={port}",
    "{--}no-browser",
    "{--}Voila.server_url=/",
    "{--}Voila.base_url={base_url}/",
    "{--}debug",
)
HUB_URL = {"JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:8888/user/dan/"}


def _parse(line: str, environ: dict[str, str] | None = None) -> Config:
    return parse_config(shlex.split(line), environ or {})


def _child(config: Config) -> ChildConfig:
    assert config.upstream is None
    assert config.child is not None
    return config.child


@pytest.mark.parametrize(
    ("line", "argv", "port", "ip", "destport"),
    [
        pytest.param("streamlit hello", ("streamlit", "hello"), 8080, "0.0.0.0", 0, id="plain"),
        pytest.param(
            "-- streamlit hello --server.port {port} --server.headless True "
            "--server.enableCORS False",
            (
                "streamlit",
                "hello",
                "--server.port",
                "{port}",
                "--server.headless",
                "True",
                "--server.enableCORS",
                "False",
            ),
            8080,
            "0.0.0.0",
            0,
            id="double-dash",
        ),
        pytest.param(
            "--port 8000 streamlit hello", ("streamlit", "hello"), 8000, "0.0.0.0", 0, id="port"
        ),
        pytest.param(
            "--port 8000 --destport 8505 -- streamlit hello --server.port {port} "
            "--server.headless True --server.enableCORS False",
            (
                "streamlit",
                "hello",
                "--server.port",
                "{port}",
                "--server.headless",
                "True",
                "--server.enableCORS",
                "False",
            ),
            8000,
            "0.0.0.0",
            8505,
            id="port-destport-double-dash",
        ),
        pytest.param(
            STREAMLIT_FIXED,
            (
                "streamlit",
                "hello",
                "{--}server.port",
                "{port}",
                "{--}server.headless",
                "True",
                "{--}server.enableCORS",
                "False",
            ),
            8000,
            "0.0.0.0",
            8505,
            id="placeholder-dashes-then-ip",
        ),
        pytest.param(VOILA, VOILA_ARGV, 8080, "0.0.0.0", 0, id="voila"),
    ],
)
def test_readme_command_lines(
    line: str, argv: tuple[str, ...], port: int, ip: str, destport: int
) -> None:
    config = _parse(line)
    child = _child(config)
    assert child.argv == argv
    assert config.port == port
    assert config.ip == ip
    assert child.destport == destport
    assert child.presentation_path == ""
    assert child.repo == ""
    assert config.hub.authtype == "none"
    assert config.log_level == "INFO"
    assert config.prefix == "/"


def test_trailing_ip_is_rproxys_not_the_commands() -> None:
    config = _parse(STREAMLIT_FIXED.replace("--ip 0.0.0.0", "--ip 127.0.0.1"))
    assert config.ip == "127.0.0.1"
    assert "--ip" not in _child(config).argv
    assert "127.0.0.1" not in _child(config).argv


def test_voila_debug_belongs_to_voila() -> None:
    config = _parse(VOILA)
    assert _child(config).argv[-1] == "{--}debug"
    assert config.log_level == "INFO"


def test_jupyterhub_service_url_gives_the_port() -> None:
    config = _parse("streamlit hello", HUB_URL)
    assert config.port == 8888
    assert _child(config).argv == ("streamlit", "hello")


def test_port_flag_beats_jupyterhub_service_url() -> None:
    assert _parse("--port 8000 streamlit hello", HUB_URL).port == 8000


def test_presentation_path_underscore_spelling() -> None:
    config = _parse(
        "--destport 0 voila {presentation_path} {--}port={port} {--}no-browser "
        "{--}Voila.server_url=/ {--}Voila.base_url={base_url}/ {--}debug "
        "--presentation_path=./Presentation.ipynb"
    )
    child = _child(config)
    assert child.argv == ("voila", "{presentation_path}", *VOILA_ARGV[2:])
    assert child.presentation_path == "./Presentation.ipynb"
    assert child.destport == 0
    assert config.port == 8080
    assert config.log_level == "INFO"


def test_presentation_path_dash_spelling() -> None:
    config = _parse("--presentation-path=./P.ipynb voila {presentation_path}")
    assert _child(config).presentation_path == "./P.ipynb"


def test_authtype_none() -> None:
    config = _parse("--authtype=none streamlit hello")
    assert config.hub.authtype == "none"
    assert _child(config).argv == ("streamlit", "hello")


def test_authtype_oauth_without_the_hub_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="JUPYTERHUB_API_TOKEN, JUPYTERHUB_API_URL") as info:
        _parse("--authtype=oauth streamlit hello")
    assert "--authtype none" in str(info.value)


HUB_ENV = {
    "JUPYTERHUB_API_TOKEN": "secret",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice-dash",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/alice/dash/oauth_callback",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!server=alice/dash"]',
    "JUPYTERHUB_USER": "alice",
    "JUPYTERHUB_SERVER_NAME": "dash",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/dash/",
    "JUPYTERHUB_SERVICE_URL": "http://10.0.0.5:8888/user/alice/dash/",
    "JUPYTERHUB_ACTIVITY_URL": "http://127.0.0.1:8081/hub/api/users/alice/activity",
}


def test_the_hub_environment_makes_oauth_the_default() -> None:
    config = _parse("streamlit hello", HUB_ENV)
    hub = config.hub
    assert hub.authtype == "oauth"
    assert (hub.user, hub.server_name, hub.client_id) == (
        "alice",
        "dash",
        HUB_ENV["JUPYTERHUB_CLIENT_ID"],
    )
    assert hub.access_scopes == ("access:servers!server=alice/dash",)
    assert (config.prefix, config.ip, config.port) == ("/user/alice/dash/", "10.0.0.5", 8888)
    assert "secret" not in repr(config)  # the token never reaches a log line through repr


def test_flags_beat_the_hub_environment_for_where_to_listen() -> None:
    config = _parse("--ip 127.0.0.1 --port 9000 streamlit hello", HUB_ENV)
    assert (config.ip, config.port) == ("127.0.0.1", 9000)


def test_bad_access_scopes_are_refused() -> None:
    with pytest.raises(ConfigError, match="JUPYTERHUB_OAUTH_ACCESS_SCOPES"):
        _parse("streamlit hello", {**HUB_ENV, "JUPYTERHUB_OAUTH_ACCESS_SCOPES": "not json"})


def test_hub_token_with_authtype_none() -> None:
    config = _parse("--authtype=none streamlit hello", {"JUPYTERHUB_API_TOKEN": "secret"})
    assert config.hub.authtype == "none"


def test_authtype_defaults_to_none_without_hub_token() -> None:
    assert _parse("streamlit hello", HUB_URL).hub.authtype == "none"


def test_readme_development_example_with_repo() -> None:
    config = _parse(
        "--authtype=none --destport=0 --port=8888 voila ./sincosfolder/Presentation.ipynb "
        "{--}port={port} {--}no-browser {--}Voila.server_url=/ {--}Voila.base_url={base_url}/ "
        "--repo=https://github.com/danlester/binder-sincos --repofolder=sincosfolder"
    )
    child = _child(config)
    assert child.argv == (
        "voila",
        "./sincosfolder/Presentation.ipynb",
        "{--}port={port}",
        "{--}no-browser",
        "{--}Voila.server_url=/",
        "{--}Voila.base_url={base_url}/",
    )
    assert config.port == 8888
    assert config.ip == "0.0.0.0"
    assert child.destport == 0
    assert config.hub.authtype == "none"
    assert child.repo == "https://github.com/danlester/binder-sincos"
    assert child.repofolder == "sincosfolder"
    assert child.repobranch == "master"


def test_jupyterhub_singleuser_flags_after_the_command() -> None:
    config = _parse(
        "streamlit hello --allow-root --notebook-dir=/home/jovyan "
        "--SingleUserNotebookApp.default_url=/lab --NotebookApp.allow_origin=* --debug"
    )
    assert _child(config).argv == ("streamlit", "hello")
    assert config.log_level == "DEBUG"


@pytest.mark.parametrize(
    "flag", ["--NotebookApp.allow_origin", "--no-NotebookApp.allow_origin", "--disable-user-config"]
)
def test_bare_ignored_flags_do_not_take_the_commands_first_word(flag: str) -> None:
    assert _child(_parse(f"{flag} streamlit hello")).argv == ("streamlit", "hello")


def test_jhsingle_options_defaults() -> None:
    config = _parse("streamlit hello")
    child = _child(config)
    assert config.timeouts.read == 300
    assert config.hub.last_activity_interval == 300
    assert config.hub.force_alive is True
    assert config.hub.forward_user_info is False
    assert config.hub.query_user_info is False
    assert child.ready_check_path == "/"
    assert child.ready_timeout == 10
    assert config.websocket_max_message_size == 64 * 1024 * 1024
    assert child.logs is True
    assert child.repobranch == "master"


def test_every_other_jhsingle_option_is_accepted() -> None:
    config = _parse(
        "--request-timeout=30 --last-activity-interval=0 --forward-user-info --query-user-info "
        "--ready-check-path=/health --ready-timeout=30 --websocket-max-message-size=1000 "
        "--progressive --no-logs --repobranch=main streamlit hello"
    )
    child = _child(config)
    assert child.argv == ("streamlit", "hello")
    assert config.timeouts.read == 30
    assert config.hub.last_activity_interval == 0
    assert config.hub.forward_user_info is True
    assert config.hub.query_user_info is True
    assert child.ready_check_path == "/health"
    assert child.ready_timeout == 30
    assert config.websocket_max_message_size == 1000
    assert child.logs is False
    assert child.repobranch == "main"


@pytest.mark.parametrize(
    ("flag", "force_alive"),
    [
        pytest.param("--force-alive", True, id="force-alive"),
        pytest.param("--no-force-alive", False, id="no-force-alive"),
        pytest.param("--force-keep-alive", True, id="force-keep-alive"),
        pytest.param("--no-force-keep-alive", False, id="no-force-keep-alive"),
    ],
)
def test_force_alive_spellings(flag: str, force_alive: bool) -> None:
    assert _parse(f"{flag} streamlit hello").hub.force_alive is force_alive


@pytest.mark.parametrize(
    ("flag", "logs"),
    [pytest.param("--logs", True, id="logs"), pytest.param("--no-logs", False, id="no-logs")],
)
def test_logs_flag(flag: str, logs: bool) -> None:
    assert _child(_parse(f"streamlit hello {flag}")).logs is logs


def test_render_fixed_port_streamlit() -> None:
    config = _parse(STREAMLIT_FIXED)
    assert command.render(_child(config).argv, {"port": "8505", "base_url": "/user/dan"}) == [
        "streamlit",
        "hello",
        "--server.port",
        "8505",
        "--server.headless",
        "True",
        "--server.enableCORS",
        "False",
    ]


def test_render_voila_under_a_hub_prefix() -> None:
    config = _parse(VOILA, {"JUPYTERHUB_SERVICE_PREFIX": "/user/dan/"})
    assert config.prefix == "/user/dan/"
    base_url = config.prefix.rstrip("/")
    assert base_url == "/user/dan"
    assert command.render(_child(config).argv, {"port": "8505", "base_url": base_url}) == [
        "voila",
        "./Presentation.ipynb",
        "--port=8505",
        "--no-browser",
        "--Voila.server_url=/",
        "--Voila.base_url=/user/dan/",
        "--debug",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("--bogus streamlit hello", "--bogus", id="unknown-option"),
        pytest.param(
            "streamlit hello --server.port 1", "--server.port", id="unprotected-command-option"
        ),
    ],
)
def test_argparse_errors_exit_2(
    line: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parse(line)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("--unix-socket --destport 9000 app", "--unix-socket", id="socket-and-port"),
        pytest.param("--upstream http://127.0.0.1:1 app", "not both", id="upstream-and-command"),
        pytest.param(
            "--upstream http://127.0.0.1:1 --destport 9000", "not both", id="upstream-and-destport"
        ),
        pytest.param("--destport 0", "--destport 0", id="destport-0-without-command"),
        pytest.param("", "nothing to proxy", id="nothing"),
    ],
)
def test_config_errors(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _parse(line)
