"""Slack's side, as published (we cannot reach Slack from the tests, nor need to): a threaded HTTP
server on loopback that records what the gate sends to an incoming webhook, a ``response_url`` and
the Web API (``/api/chat.postMessage``, ``/api/chat.update``), and answers as Slack documents it
(``ok`` for webhooks, ``{"ok": true, "channel", "ts"}`` for the API), or with scripted statuses."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHANNEL = "C0GATE0001"
TS = "1700000000.000100"


class SlackReceiver:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # scripted answers, first in first out; then 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw)}
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status != 200:
                    body, kind = b"internal_error", "text/plain"
                elif self.path.startswith("/api/"):
                    body, kind = json.dumps({"ok": True, "channel": CHANNEL, "ts": TS}).encode(), "application/json"
                else:
                    body, kind = b"ok", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base + path

    def to(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def wait_for(self, path: str, count: int = 1, seconds: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while len(self.to(path)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.to(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
