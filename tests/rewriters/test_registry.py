"""Finding and loading rewriters through the entry-point group, and choosing them by config."""

from __future__ import annotations

import pytest

from rproxy import cli
from rproxy.errors import ConfigError
from rproxy.rewriters import registry
from rproxy.rewriters.headers import HeaderRewriter


def test_built_in_rewriters_are_registered_like_any_plugin() -> None:
    installed = registry.discover()
    assert installed["headers"].value == "rproxy.rewriters.headers:HeaderRewriter"
    assert [type(r) for r in registry.load(["headers"])] == [HeaderRewriter]


def test_an_unknown_rewriter_stops_start_up_with_its_name() -> None:
    with pytest.raises(ConfigError, match="rewriter 'nope' is not installed"):
        registry.load(["headers", "nope"])


@pytest.mark.parametrize(
    ("argv", "enabled"),
    [
        pytest.param([], ("headers", "css", "html"), id="default"),
        pytest.param(["--no-rewrite"], (), id="none"),
        pytest.param(["--rewriters", "headers"], ("headers",), id="chosen"),
        pytest.param(["--rewriters", " headers , "], ("headers",), id="spaces"),
    ],
)
def test_config_chooses_the_rewriters_and_their_order(
    argv: list[str], enabled: tuple[str, ...]
) -> None:
    assert cli.parse_config(["--destport", "8888", *argv], {}).rewriters == enabled


def test_list_rewriters_shows_installed_and_enabled(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--destport", "8888", "--rewriters", "headers,extra", "--list-rewriters"]) == 0
    out = capsys.readouterr().out
    assert "headers" in out
    assert "enabled (1)" in out
    assert "extra" in out
    assert "MISSING" in out


def test_list_rewriters_needs_nothing_to_proxy(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list-rewriters"]) == 0
    out = capsys.readouterr().out
    assert "headers          enabled (1)" in out
    assert "html             enabled (3)" in out
