"""A real SMTP server on loopback (aiosmtpd) for the e-mail tests: it keeps every message it accepts."""

from __future__ import annotations

import email
import socket
import threading
import time
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


class _Keep:
    def __init__(self, server: LoopbackSMTP) -> None:
        self.server = server

    async def handle_DATA(self, smtp_server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        with self.server.lock:
            self.server.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class LoopbackSMTP:
    """aiosmtpd on 127.0.0.1 and a free port, started at once; ``messages``: (recipients, message)."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        with socket.socket() as sock:
            sock.bind((self.host, 0))
            self.port = int(sock.getsockname()[1])
        self.messages: list[tuple[list[str], Message]] = []
        self.lock = threading.Lock()
        self.controller = Controller(_Keep(self), hostname=self.host, port=self.port)
        self.controller.start()

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [message for recipients, message in self.messages if address in recipients]

    def wait_for(self, address: str, count: int = 1, seconds: float = 30) -> list[Message]:
        deadline = time.monotonic() + seconds
        while len(self.to(address)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.to(address)

    def stop(self) -> None:
        self.controller.stop()
