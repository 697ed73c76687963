"""Load generators: Debian's ``wrk`` (closed loop, for throughput) and a lean asyncio + httpx
open-loop client (for latency at a fixed arrival rate, measured from each request's scheduled
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

import httpx

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


async def _open_loop(
    url: str,
    headers: Callable[[], dict[str, str]],
    body: bytes,
    rate: float,
    seconds: float,
    ok: Callable[[dict[str, Any]], str],
) -> OpenLoopResult:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    # A bounded number in flight: httpcore's pool slows down quadratically with queued requests,
    # which would make the client the bottleneck. Waiting for a slot counts in the latency.
    in_flight = asyncio.Semaphore(256)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(scheduled: float) -> None:
            nonlocal errors
            try:
                async with in_flight:
                    response = await client.post(url, content=body, headers=headers())
                elapsed = (time.perf_counter() - scheduled) * 1000
                if response.status_code >= 300:
                    errors += 1
                    statuses[f"http {response.status_code}"] = statuses.get(f"http {response.status_code}", 0) + 1
                    return
                key = ok(response.json())
                statuses[key] = statuses.get(key, 0) + 1
                latencies.append(elapsed)
            except httpx.HTTPError as exc:
                errors += 1
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1

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
    """POST ``body`` at ``rate`` per second for ``seconds``, each with a fresh Idempotency-Key;
    latency from the scheduled start of each request to its full answer."""
    encoded = json.dumps(body).encode()
    prefix = uuid.uuid4().hex[:12]
    counter = iter(range(10**9))

    def headers() -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"{prefix}-{next(counter)}",
        }

    return asyncio.run(_open_loop(url, headers, encoded, rate, seconds, ok))
