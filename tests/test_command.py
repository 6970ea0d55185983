"""The wrapped command's placeholders, origin-host check and conda wrapping (rproxy.command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rproxy import command
from rproxy.errors import ConfigError

VALUES = {
    "port": "8505",
    "unix_socket": "/tmp/rproxy-x/app.sock",
    "base_url": "/user/dan",
    "origin_host": "example.org:8080",
    "presentation_path": "/home/dan/Presentation.ipynb",
    "presentation_dirname": "/home/dan",
    "presentation_basename": "Presentation.ipynb",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(["{port}"], ["8505"], id="port-alone"),
        pytest.param(["--port={port}"], ["--port=8505"], id="port-inside"),
        pytest.param(["unix:{unix_socket}"], ["unix:/tmp/rproxy-x/app.sock"], id="unix-socket"),
        pytest.param(
            ["--Voila.base_url={base_url}/"], ["--Voila.base_url=/user/dan/"], id="base-url"
        ),
        pytest.param(["{-}m"], ["-m"], id="single-dash"),
        pytest.param(["{--}server.port"], ["--server.port"], id="double-dash"),
        pytest.param(["{-}"], ["-"], id="single-dash-alone"),
        pytest.param(["{--}"], ["--"], id="double-dash-alone"),
        pytest.param(["--host={origin_host}"], ["--host=example.org:8080"], id="origin-host"),
        pytest.param(
            ["{presentation_path}"], ["/home/dan/Presentation.ipynb"], id="presentation-path"
        ),
        pytest.param(["cd={presentation_dirname}"], ["cd=/home/dan"], id="presentation-dirname"),
        pytest.param(
            ["name={presentation_basename}"],
            ["name=Presentation.ipynb"],
            id="presentation-basename",
        ),
        pytest.param(
            ["{--}Voila.base_url={base_url}/"],
            ["--Voila.base_url=/user/dan/"],
            id="two-in-one-argument",
        ),
        pytest.param(
            ["{-}{--}{port}:{port}{base_url}"],
            ["---8505:8505/user/dan"],
            id="several-adjacent",
        ),
        pytest.param(
            ["voila", "{presentation_path}", "{--}port={port}", "{--}no-browser"],
            ["voila", "/home/dan/Presentation.ipynb", "--port=8505", "--no-browser"],
            id="whole-command",
        ),
        pytest.param(['{"a": 1}'], ['{"a": 1}'], id="json-untouched"),
        pytest.param(["{foo}"], ["{foo}"], id="unknown-name-untouched"),
        pytest.param(
            ["{ port }", "{Port}", "{{port}}"], ["{ port }", "{Port}", "{8505}"], id="near"
        ),
        pytest.param(["{}", "{", "}", "{-"], ["{}", "{", "}", "{-"], id="stray-braces"),
        pytest.param(["python3", "-c", "print(1)"], ["python3", "-c", "print(1)"], id="no-holders"),
        pytest.param([], [], id="empty"),
    ],
)
def test_render(template: list[str], expected: list[str]) -> None:
    assert command.render(template, VALUES) == expected


def test_render_keeps_a_value_with_spaces_as_one_argument() -> None:
    rendered = command.render(
        ["app", "--file", "{presentation_path}", "x {port} y"],
        {"presentation_path": "/home/dan/My Talk; rm -rf ~.ipynb", "port": "1"},
    )
    assert rendered == ["app", "--file", "/home/dan/My Talk; rm -rf ~.ipynb", "x 1 y"]


def test_render_does_not_expand_placeholders_inside_values() -> None:
    rendered = command.render(
        ["{presentation_path}", "{base_url}"],
        {"presentation_path": "/x/{port}.ipynb", "base_url": "/{--}", "port": "1"},
    )
    assert rendered == ["/x/{port}.ipynb", "/{--}"]


def test_render_does_not_change_the_template() -> None:
    template = ("{--}port={port}",)
    command.render(template, {"port": "1"})
    assert template == ("{--}port={port}",)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("port", id="port"),
        pytest.param("unix_socket", id="unix_socket"),
        pytest.param("base_url", id="base_url"),
        pytest.param("origin_host", id="origin_host"),
        pytest.param("presentation_path", id="presentation_path"),
        pytest.param("presentation_dirname", id="presentation_dirname"),
        pytest.param("presentation_basename", id="presentation_basename"),
    ],
)
def test_render_placeholder_without_value_is_a_config_error(name: str) -> None:
    values = {k: v for k, v in VALUES.items() if k != name}
    with pytest.raises(ConfigError, match=rf"\{{{name}\}}"):
        command.render(["app", f"--x={{{name}}}"], values)


@pytest.mark.parametrize(
    ("template", "name", "expected"),
    [
        pytest.param(["{--}port={port}"], "port", True, id="port-inside"),
        pytest.param(["app", "--host", "{origin_host}"], "origin_host", True, id="origin-host"),
        pytest.param(["{-}m"], "-", True, id="single-dash"),
        pytest.param(["{--}x"], "--", True, id="double-dash"),
        pytest.param(["{--}x"], "-", False, id="double-dash-is-not-single"),
        pytest.param(["app", "{port}"], "origin_host", False, id="absent"),
        pytest.param(["{portx}", "{ port }"], "port", False, id="near-misses"),
        pytest.param(["{foo}"], "foo", False, id="unknown-name"),
        pytest.param([], "port", False, id="empty"),
    ],
)
def test_uses(template: list[str], name: str, expected: bool) -> None:
    assert command.uses(template, name) is expected


def test_presentation_values_relative_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cwd = Path.cwd()
    assert command.presentation_values("./sub/Presentation.ipynb") == {
        "presentation_path": str(cwd / "sub" / "Presentation.ipynb"),
        "presentation_dirname": str(cwd / "sub"),
        "presentation_basename": "Presentation.ipynb",
    }


def test_presentation_values_bare_name_is_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cwd = Path.cwd()
    assert command.presentation_values("Presentation.ipynb") == {
        "presentation_path": str(cwd / "Presentation.ipynb"),
        "presentation_dirname": str(cwd),
        "presentation_basename": "Presentation.ipynb",
    }


def test_presentation_values_absolute_path_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert command.presentation_values("/srv/talks/a.ipynb") == {
        "presentation_path": "/srv/talks/a.ipynb",
        "presentation_dirname": "/srv/talks",
        "presentation_basename": "a.ipynb",
    }


def test_presentation_values_empty_gives_three_empty_strings() -> None:
    assert command.presentation_values("") == {
        "presentation_path": "",
        "presentation_dirname": "",
        "presentation_basename": "",
    }


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        pytest.param("example.org", True, id="name"),
        pytest.param("example.org:8080", True, id="name-port"),
        pytest.param("127.0.0.1:1", True, id="ipv4-port"),
        pytest.param("[::1]:8888", True, id="ipv6-port"),
        pytest.param("localhost", True, id="localhost"),
        pytest.param(None, False, id="none"),
        pytest.param("", False, id="empty"),
        pytest.param("a b", False, id="space"),
        pytest.param("x/y", False, id="slash"),
        pytest.param("x@y", False, id="at"),
        pytest.param("<script>", False, id="markup"),
        pytest.param("host:port", False, id="non-numeric-port"),
        pytest.param("a\r\nb", False, id="crlf"),
        pytest.param("example.org\n", False, id="trailing-newline"),
        pytest.param("example.org:", False, id="empty-port"),
        pytest.param("x;y", False, id="semicolon"),
        pytest.param("$(id)", False, id="shell"),
        # A host name never starts with a dash (RFC 1123); "{origin_host}" alone as an argument
        # would otherwise reach the command as an option of its own.
        pytest.param("--help", False, id="double-dash-option"),
        pytest.param("-x", False, id="single-dash-option"),
    ],
)
def test_valid_origin_host(host: str | None, valid: bool) -> None:
    assert command.valid_origin_host(host) is valid


def test_in_conda_env_without_conda_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONDA_EXE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="conda") as info:
        command.in_conda_env(["voila", "x.ipynb"], "myenv")
    assert "myenv" in str(info.value)


def test_in_conda_env_uses_conda_exe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_EXE", "/opt/conda/bin/conda")
    assert command.in_conda_env(["voila", "--port=1", "a b.ipynb"], "myenv") == [
        "/opt/conda/bin/conda",
        "run",
        "--no-capture-output",
        "--name",
        "myenv",
        "voila",
        "--port=1",
        "a b.ipynb",
    ]


def test_in_conda_env_finds_conda_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conda = tmp_path / "conda"
    conda.write_text("#!/bin/sh\n")
    conda.chmod(0o755)
    monkeypatch.delenv("CONDA_EXE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert command.in_conda_env(["app"], "env") == [
        str(conda),
        "run",
        "--no-capture-output",
        "--name",
        "env",
        "app",
    ]
