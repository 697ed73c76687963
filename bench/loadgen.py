"""Load generators: Debian's ``wrk`` (closed loop, for throughput) and a lean open-loop client on
asyncio streams (for latency at a fixed arrival rate, measured from each request's scheduled
start so that a slow server cannot hide its delay: no coordinated omission)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.workload import EACH

LUA = Path(__file__).resolve().parent / "wrk_propose.lua"


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk not found: apt-get install wrk (Debian's package)")
    return path


@dataclass
class WrkResult:
    requests_per_second: float
    requests: int
    errors: int  # non-2xx/3xx answers plus socket errors
    p50_ms: float
    p99_ms: float
    raw: str = field(repr=False)


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value.strip())
    if match is None:
        return float("nan")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}[unit]


def wrk(url: str, token: str, bodies: list[dict[str, Any]], *, connections: int, seconds: float) -> WrkResult:
    """POST ``bodies`` in turn to ``url`` from ``connections`` keep-alive connections (one wrk thread)."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        for body in bodies:
            handle.write(json.dumps(body) + "\n")
    try:
        out = subprocess.run(
            [
                wrk_path(),
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "--latency",
                "-s",
                str(LUA),
                url,
                "--",
                handle.name,
                token,
                uuid.uuid4().hex[:12],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(handle.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    return WrkResult(rps, total, errors, _ms(p50.group(1)) if p50 else 0.0, _ms(p99.group(1)) if p99 else 0.0, out)


@dataclass
class OpenLoopResult:
    latencies_ms: list[float]
    statuses: dict[str, int]
    errors: int
    sent: int

    def percentile(self, p: float) -> float:
        values = sorted(self.latencies_ms)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


class _Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a request costs a write and two reads,
    ~10x less CPU than httpx, so that the load generator takes little of the cores it shares with
    the stack it measures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes, bool]:
        """(status, body, keep-alive) of one POST; ``head`` is the request line and headers."""
        self.writer.write(head + body)
        header_block = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = header_block.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            await self.reader.readuntil(b"\r\n")
            content = b"".join(parts)
        else:
            content = await self.reader.read()
        keep_alive = headers.get("connection", "").lower() != "close" and "content-length" in headers
        return int(status_line.split(" ", 2)[1]), content, keep_alive

    def close(self) -> None:
        self.writer.close()


async def _open_loop(
    url: str,
    request: Callable[[], tuple[dict[str, str], bytes]],
    rate: float,
    seconds: float,
    ok: Callable[[dict[str, Any]], str],
) -> OpenLoopResult:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    # At most 256 in flight, on as many keep-alive connections: waiting for one counts in the latency.
    in_flight = asyncio.Semaphore(256)
    idle: list[_Connection] = []

    def count(key: str) -> None:
        statuses[key] = statuses.get(key, 0) + 1

    async def one(scheduled: float) -> None:
        nonlocal errors
        headers, body = request()
        lines = [f"POST {target} HTTP/1.1", f"Host: {parsed.netloc}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        async with in_flight:
            connection = None
            try:
                # A kept-alive connection the server has closed meanwhile (its keep-alive timeout)
                # fails before any answer: the request goes again, once, on a new connection.
                while idle:
                    connection = idle.pop()
                    try:
                        code, content, keep_alive = await connection.post(head, body)
                        break
                    except (OSError, asyncio.IncompleteReadError):
                        connection.close()
                        connection = None
                if connection is None:
                    connection = _Connection(*await asyncio.open_connection(host, port))
                    code, content, keep_alive = await connection.post(head, body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors += 1
                count(type(exc).__name__)
                if connection is not None:
                    connection.close()
                return
            if keep_alive:
                idle.append(connection)
            else:
                connection.close()
        elapsed = (time.perf_counter() - scheduled) * 1000
        if code >= 300:
            errors += 1
            count(f"http {code}")
            return
        count(ok(json.loads(content)))
        latencies.append(elapsed)

    start = time.perf_counter()
    total = int(rate * seconds)
    tasks = []
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return OpenLoopResult(latencies, statuses, errors, total)


def open_loop(
    url: str,
    token: str,
    body: dict[str, Any],
    *,
    rate: float,
    seconds: float,
    ok: Callable[[dict[str, Any]], str] = lambda data: str(data.get("status")),
) -> OpenLoopResult:
    """POST ``body`` at ``rate`` per second for ``seconds``, each with a fresh Idempotency-Key (and
    ``EACH`` in the body replaced by it: each request its own effect); latency from the scheduled start
    of each request to its full answer."""
    template = json.dumps(body)
    prefix = uuid.uuid4().hex[:12]
    counter = iter(range(10**9))

    def request() -> tuple[dict[str, str], bytes]:
        key = f"{prefix}-{next(counter)}"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": key}
        return headers, template.replace(EACH, key).encode()

    return asyncio.run(_open_loop(url, request, rate, seconds, ok))
