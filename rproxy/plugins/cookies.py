"""Signed cookie values: what rproxy stores in a browser and must get back unchanged.

A value is sent as ``payload.timestamp.signature``: the payload base64url-encoded, the signature
an HMAC-SHA256 over the cookie's name, payload and timestamp. Binding the name means one cookie
cannot be replayed as another; the timestamp bounds its age. The key comes from a secret only this
server knows (the JupyterHub plugin derives it from JUPYTERHUB_API_TOKEN), so every worker process
of the server accepts the others' cookies, and another server on the same domain cannot plant one
(a cookie set for this path by a neighbour fails the check). Values are not encrypted: put nothing
in them the browser's user may not read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time


class CookieSigner:
    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"rproxy cookie signing v1", hashlib.sha256).digest()

    def sign(self, name: str, value: str, now: float | None = None) -> str:
        payload = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
        stamp = str(int(time.time() if now is None else now))
        return f"{payload}.{stamp}.{self._mac(name, payload, stamp)}"

    def verify(
        self, name: str, signed: str, max_age: float, now: float | None = None
    ) -> str | None:
        """The value, if ``signed`` came from ``sign(name, ...)`` less than ``max_age`` ago."""
        parts = signed.split(".")
        if len(parts) != 3:
            return None
        payload, stamp, mac = parts
        if not hmac.compare_digest(mac, self._mac(name, payload, stamp)):
            return None
        age = (time.time() if now is None else now) - int(stamp)
        if not -60 <= age <= max_age:  # a minute of clock skew between workers is fine
            return None
        try:
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None

    def _mac(self, name: str, payload: str, stamp: str) -> str:
        message = f"{name}\n{payload}\n{stamp}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cookie_value(header: str, name: str) -> str | None:
    """The value of the first cookie called ``name`` in a Cookie request header, else None.

    The pairs are ``name=value`` separated by ``;`` (RFC 6265 5.4). The first, because a browser
    lists the cookie with the longest path first: rproxy's own, scoped to the prefix, before a
    namesake a neighbour on the same host set for ``/`` (which would fail the signature)."""
    for pair in header.split(";"):
        key, equals, value = pair.strip().partition("=")
        if equals and key == name:
            return value.strip()
    return None
