"""Signed cookies: a value comes back only unchanged, under its own name, and young enough."""

from __future__ import annotations

import pytest

from rproxy.plugins.cookies import CookieSigner

SIGNER = CookieSigner(b"server secret")
STRANGER = CookieSigner(b"another server's secret")


def test_a_signed_value_comes_back() -> None:
    signed = SIGNER.sign("session", "token-äbc/=+", now=1000)
    assert SIGNER.verify("session", signed, max_age=60, now=1030) == "token-äbc/=+"


@pytest.mark.parametrize(
    ("name", "signed", "now"),
    [
        pytest.param("other", SIGNER.sign("session", "t", now=1000), 1000, id="other-name"),
        pytest.param("session", SIGNER.sign("session", "t", now=1000), 1061, id="too-old"),
        pytest.param("session", SIGNER.sign("session", "t", now=1000), 900, id="from-future"),
        pytest.param("session", STRANGER.sign("session", "t", now=1000), 1000, id="other-key"),
        pytest.param("session", "dA.1000.bad", 1000, id="forged"),
        pytest.param("session", "garbage", 1000, id="garbage"),
        pytest.param("session", "", 1000, id="empty"),
    ],
)
def test_anything_else_is_refused(name: str, signed: str, now: float) -> None:
    assert SIGNER.verify(name, signed, max_age=60, now=now) is None


def test_a_changed_payload_is_refused() -> None:
    payload, stamp, mac = SIGNER.sign("session", "alice", now=1000).split(".")
    other = SIGNER.sign("session", "mallory", now=1000).split(".")[0]
    assert SIGNER.verify("session", f"{other}.{stamp}.{mac}", max_age=60, now=1000) is None
    assert SIGNER.verify("session", f"{payload}.1001.{mac}", max_age=60, now=1000) is None
