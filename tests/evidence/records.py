"""A system of record on loopback for lookup tests: a real HTTP server (127.0.0.1) with routes that
answer JSON, fail, stall, drip or answer too much, and a log of what it was asked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Records:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {
            "A-1": {"order_id": "A-1", "total": 80, "customer_id": "C-1", "refundable": True},
            "A 2/x": {"order_id": "A 2/x", "total": 30, "customer_id": "C-2", "refundable": False},
        }
        records = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                records.requests.append({"path": self.path, "headers": dict(self.headers)})
                status, body, delay = records.answer(self.path)
                if delay:
                    time.sleep(delay)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://localhost:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[int, Any, float]:
        from urllib.parse import unquote

        if path.startswith("/orders/"):
            order = self.orders.get(unquote(path.removeprefix("/orders/")))
            return (200, order, 0) if order else (404, {"error": "no such order"}, 0)
        if path == "/slow":
            return 200, {"slow": True}, 1.5
        if path.startswith("/wait/"):
            return 200, {"waited": True}, float(path.removeprefix("/wait/"))
        if path == "/fail":
            return 503, {"error": "down"}, 0
        if path == "/text":
            return 200, b"<html>not json</html>", 0
        if path == "/big":
            return 200, b'"' + b"x" * 2_000_000 + b'"', 0
        if path == "/headers":
            return 200, {"authorization": self.requests[-1]["headers"].get("Authorization")}, 0
        return 404, {"error": "no route"}, 0

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def records() -> Iterator[Records]:
    server = Records()
    yield server
    server.close()
