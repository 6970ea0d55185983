"""A small HTTP app for the supervisor tests, run as a real child process.

Standard library only, so it starts fast. Options shape its behaviour: where it listens, whether it
waits for a file before listening, floods its output, ignores SIGTERM, starts a grandchild, or
exits at once, or serves only under a base URL (``--base-url``, as Jupyter's does: a 404
elsewhere). Routes: /argv, /pid, /cwd (JSON), /crash (answers, then exits with status 3),
/halves?size=N&gate=PATH (N bytes, byte i being i % 251, with Content-Length:
the first half at once, the second once the file PATH exists, never if it does not).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def halves_body(size: int) -> bytes:
    """The body /halves sends: byte i is i % 251, so a lost or moved byte shows."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


class Handler(BaseHTTPRequestHandler):
    base_url = ""  # --base-url: paths outside it are 404, and it is taken off the others

    def do_GET(self) -> None:
        if self.base_url:
            if not self.path.startswith(self.base_url + "/"):
                self.send_error(404)
                return
            self.path = self.path[len(self.base_url) :]
        if self.path.startswith("/halves?"):
            self._halves()
            return
        crash = self.path == "/crash"
        payload = {"/argv": sys.argv, "/pid": os.getpid(), "/cwd": os.getcwd()}.get(
            self.path, "hello"
        )
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if crash:
            os._exit(3)

    def _halves(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        body, gate = halves_body(int(query["size"][0])), query["gate"][0]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        while not os.path.exists(gate):
            time.sleep(0.02)
        self.wfile.write(body[len(body) // 2 :])
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--unix-socket")
    parser.add_argument("--wait-for", help="listen only once this file exists")
    parser.add_argument("--say", action="append", default=[], help="print this line first")
    parser.add_argument("--flood", type=int, default=0, help="print this many KiB first")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--grandchild", action="store_true", help="start a long sleep child")
    parser.add_argument("--exit", type=int, help="exit at once with this status")
    parser.add_argument("--origin", help="ignored: shows what {origin_host} became")
    parser.add_argument("--base-url", default="", help="serve only under this path")
    args = parser.parse_args()
    Handler.base_url = args.base_url.rstrip("/")

    for line in args.say:
        print(line, flush=True)
    if args.exit is not None:
        sys.exit(args.exit)
    if args.flood:
        line = "x" * 1023 + "\n"
        sys.stdout.write(line * args.flood)
        sys.stdout.write("y" * (1 << 20) + "\n")
        sys.stdout.write("flood done\n")
        sys.stdout.flush()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, lambda *_: print("got SIGHUP", flush=True))
    if args.grandchild:
        sleeper = subprocess.Popen(["sleep", "1000"])
        print(f"grandchild {sleeper.pid}", flush=True)
    while args.wait_for and not os.path.exists(args.wait_for):
        time.sleep(0.02)
    server: socketserver.BaseServer
    if args.unix_socket:
        server = UnixServer(args.unix_socket, Handler)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"child {os.getpid()} listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
