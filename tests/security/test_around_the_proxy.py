"""Reachable around the proxy (the class of CVE-2025-32428): the desktop's X display.

tests/test_desktop.py proves Xvnc has no TCP port (VNC or X) and its socket folder is 0700;
tests/test_launch.py proves a ``--unix-socket`` command lives in a 0700 folder. What is left is
the X display the desktop app draws on: Xvnc also listens on /tmp/.X11-unix/X<n> (mode 0777) and
on Linux's abstract socket of the same name, which no file mode guards. With a real Xvnc started
by rproxy, proven: an X client without the cookie (any other local process or user) is refused
on both sockets, one with the cookie from rproxy's private 0600 Xauthority file is let in (so
the app still is), and the VNC socket itself is 0600.
"""

from __future__ import annotations

import asyncio
import socket
import stat
import struct
from pathlib import Path

from support import listen

from rproxy.app import make_runner
from rproxy.cli import parse_config
from rproxy.keys import SERVICES

X11 = Path("/tmp/.X11-unix")


def _x_setup(address: str, cookie: bytes | None) -> int:
    """The first byte of an X server's answer to a connection setup: 1 success, 0 refused."""
    name = b"MIT-MAGIC-COOKIE-1" if cookie is not None else b""
    data = cookie or b""

    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(
            b"l\0" + struct.pack("<HHHHxx", 11, 0, len(name), len(data)) + pad(name) + pad(data)
        )
        return sock.recv(8)[0]


def _cookie(xauthority: Path) -> bytes:
    raw = xauthority.read_bytes()
    fields, at = [], 2
    for _ in range(4):
        (size,) = struct.unpack(">H", raw[at : at + 2])
        fields.append(raw[at + 2 : at + 2 + size])
        at += 2 + size
    assert fields[2] == b"MIT-MAGIC-COOKIE-1"
    return fields[3]


def _display_of(vnc_socket: str) -> str | None:
    """The X display of the Xvnc whose command line names ``vnc_socket``, once it runs."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if vnc_socket.encode() in args and any(a.startswith(b":") for a in args):
            return next(a for a in args if a.startswith(b":")).decode()[1:]
    return None


async def test_the_desktop_display_refuses_local_clients_without_the_cookie() -> None:
    argv = [
        "--desktop",
        "--desktop-geometry",
        "640x480",
        "--prefix",
        "/user/ann/",
        "--ip",
        "127.0.0.1",
        "--port",
        "0",
        "--",
        "sleep",
        "600",
    ]
    runner = make_runner(parse_config(argv, {}))
    try:
        await listen(runner)
        socket_path = runner.app[SERVICES].main.upstream.unix_socket
        assert socket_path is not None
        vnc_socket = Path(socket_path)
        folder = vnc_socket.parent
        xauthority = folder / "Xauthority"
        async with asyncio.timeout(60):
            # polls for Xvnc's process and sockets (nothing announces them), bounded by the timeout
            while (display := _display_of(socket_path)) is None or not (  # noqa: ASYNC110
                vnc_socket.exists() and (X11 / f"X{display}").exists()  # noqa: ASYNC240
            ):
                await asyncio.sleep(0.05)
        for address in (str(X11 / f"X{display}"), f"\0{X11 / f'X{display}'}"):
            assert await asyncio.to_thread(_x_setup, address, None) == 0, address
            assert await asyncio.to_thread(_x_setup, address, b"x" * 16) == 0, address
            cookie = _cookie(xauthority)
            assert await asyncio.to_thread(_x_setup, address, cookie) == 1, address
        modes = [stat.S_IMODE(p.stat().st_mode) for p in (folder, xauthority, vnc_socket)]
        assert modes == [0o700, 0o600, 0o600]
    finally:
        await runner.cleanup()
