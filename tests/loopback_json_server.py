"""LoopbackJsonServer: the HTTP plumbing the API stand-ins share (a JSON API on a loopback port).

A stand-in subclasses it and implements ``answer(method, path, headers, body)``
-> ``(status, JSON-able reply)``; every request is recorded in ``requests``
(method, path with its query, headers, raw body) before it is answered.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackJsonServer:
    def __init__(self, port: int = 0):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                       "raw": raw})
                status, reply = outer.answer(self.command, self.path, self.headers, raw)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # poll_interval: how long shutdown() may wait for the serving loop to notice (default 0.5 s, paid on every
        # exit: the Hypothesis tests start a stand-in per generated case)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def answer(self, method: str, path: str, headers, raw: bytes) -> "tuple[int, object]":
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        self.server.shutdown()
        self.server.server_close()

    def stop(self) -> None:
        """What a stand-in does before its server goes (its processes, ...)."""
