"""Signed cookies: a value comes back only unchanged, under its own name, and young enough; and
the value of one cookie found in a Cookie request header."""

from __future__ import annotations

import pytest

from rproxy.plugins.cookies import CookieSigner, cookie_value

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


@pytest.mark.parametrize(
    ("header", "value"),
    [
        pytest.param("rp=a.1.b", "a.1.b", id="alone"),
        pytest.param("x=1; rp=a.1.b; y=2", "a.1.b", id="among-others"),
        pytest.param("x=1;rp=a.1.b ;y=2", "a.1.b", id="spacing"),
        pytest.param("rp=ours; rp=neighbours", "ours", id="first-of-two"),  # longest path first
        pytest.param("rp=", "", id="empty"),
        pytest.param("rp=a=b", "a=b", id="equals-in-value"),
        pytest.param("xrp=a; rpx=b; RP=c", None, id="other-names"),
        pytest.param("rp; x=1", None, id="no-value"),
        pytest.param("", None, id="no-cookies"),
    ],
)
def test_a_cookie_is_found_by_its_exact_name(header: str, value: str | None) -> None:
    assert cookie_value(header, "rp") == value
