"""Probes: /healthz (the process answers), /readyz (database, Redis, a live worker), and the
workers' heartbeats that /readyz, /metrics and the ops page read.

Each Celery worker's main process writes its heartbeat every GATE_WORKER_HEARTBEAT_SECONDS (a
bootstep on the worker's timer): its hostname in a Redis sorted set scored by the time, so that
readers list live workers with one ZRANGEBYSCORE and a stopped worker ages out by itself (a worker
that stops cleanly removes itself at once).

The probes (and /metrics) are answered by :class:`ProbeMiddleware`, first in the middleware stack:
before the Host check (a kubelet or Prometheus addresses the pod by its IP, which is in no
ALLOWED_HOSTS), the HTTPS redirect and sessions.

``python -m approvals.ops.health worker`` exits 0 when this machine's worker (``celery@<hostname>``)
beat recently: the worker container's healthcheck. It reads REDIS_URL and needs no Django setup.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
from celery import bootsteps
from django.http import HttpRequest, HttpResponse, JsonResponse

HEARTBEAT_KEY = "workers"  # under GATE_OBS_REDIS_PREFIX
DEFAULT_INTERVAL = 10.0
DEFAULT_MAX_AGE = 30.0


def _settings() -> Any:
    from django.conf import settings

    return settings


def _heartbeat_key(prefix: str) -> str:
    return f"{prefix}{HEARTBEAT_KEY}"


@dataclass(frozen=True)
class WorkerHeartbeat:
    hostname: str
    age: float  # seconds since its last heartbeat
    fresh: bool  # within GATE_WORKER_HEARTBEAT_MAX_AGE


def heartbeat_write(client: redis.Redis, prefix: str, hostname: str, *, max_age: float) -> None:
    """One heartbeat; also forgets workers silent for an hour (their gauges would linger)."""
    now = time.time()
    pipe = client.pipeline(transaction=True)
    pipe.zadd(_heartbeat_key(prefix), {hostname: now})
    pipe.zremrangebyscore(_heartbeat_key(prefix), "-inf", now - max(3600.0, max_age))
    pipe.execute()


def worker_heartbeats() -> list[WorkerHeartbeat]:
    """Workers that beat in the last hour, freshest first; raises redis.RedisError."""
    settings = _settings()
    if not settings.REDIS_URL:
        return []
    from approvals.ops.metrics import redis_client

    now = time.time()
    max_age = settings.GATE_WORKER_HEARTBEAT_MAX_AGE
    entries = redis_client().zrevrangebyscore(
        _heartbeat_key(settings.GATE_OBS_REDIS_PREFIX), "+inf", now - 3600, withscores=True
    )
    return [
        WorkerHeartbeat(hostname=member.decode(), age=round(max(now - score, 0.0), 3), fresh=now - score <= max_age)
        for member, score in entries
    ]


class HeartbeatStep(bootsteps.StartStopStep):
    """Celery worker bootstep: a heartbeat on the worker's own timer, in its main process, so that
    it stops when the worker's event loop stops."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: Any = None

    def _beat(self, worker: Any) -> None:
        settings = _settings()
        if not settings.REDIS_URL:
            return
        from approvals.ops.metrics import redis_client

        try:
            heartbeat_write(
                redis_client(),
                settings.GATE_OBS_REDIS_PREFIX,
                worker.hostname,
                max_age=settings.GATE_WORKER_HEARTBEAT_MAX_AGE,
            )
        except redis.RedisError as exc:
            import logging

            logging.getLogger(__name__).warning("worker heartbeat not written: %s", exc)

    def start(self, parent: Any) -> None:
        self._beat(parent)
        interval = _settings().GATE_WORKER_HEARTBEAT_SECONDS
        self.timer_ref = parent.timer.call_repeatedly(interval, self._beat, (parent,), priority=10)

    def stop(self, parent: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None
        settings = _settings()
        if settings.REDIS_URL:
            from approvals.ops.metrics import redis_client

            with contextlib.suppress(redis.RedisError):  # else it ages out
                redis_client().zrem(_heartbeat_key(settings.GATE_OBS_REDIS_PREFIX), parent.hostname)


# --- probes ---------------------------------------------------------------------------------------


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: this process answers. Touches no dependency, so a database outage never gets
    healthy web processes restarted."""
    return JsonResponse({"status": "ok"})


def _timed(check: Callable[[], str | None]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500], "ms": _ms(started)}
    return {"ok": True, "ms": _ms(started), **({"detail": detail} if detail else {})}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _check_database() -> str | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return None


def _check_redis() -> str | None:
    from approvals.ops.metrics import redis_client

    redis_client().ping()
    return None


def _check_worker() -> str | None:
    settings = _settings()
    fresh = [w for w in worker_heartbeats() if w.fresh]
    if not fresh:
        raise RuntimeError(f"no worker heartbeat in the last {settings.GATE_WORKER_HEARTBEAT_MAX_AGE:g} s")
    return ", ".join(f"{w.hostname} ({w.age:.1f} s ago)" for w in fresh)


def readiness() -> tuple[bool, dict[str, dict[str, Any]]]:
    settings = _settings()
    checks = {"database": _timed(_check_database)}
    if settings.REDIS_URL:
        checks["redis"] = _timed(_check_redis)
        checks["worker"] = (
            _timed(_check_worker)
            if checks["redis"]["ok"]
            else {"ok": False, "error": "Redis is unavailable: worker heartbeats cannot be read"}
        )
    else:
        checks["worker"] = {"ok": True, "detail": "embedded mode: tasks run in-process"}
    return all(check["ok"] for check in checks.values()), checks


def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when the database and Redis answer and a worker beat recently, else 503
    with every check and what is missing (the errors too, unless GATE_METRICS_TOKEN is set and
    not sent)."""
    ready, checks = readiness()
    from approvals.ops.metrics import metrics_authorized

    if not metrics_authorized(request):
        # GATE_METRICS_TOKEN is set and was not sent: which checks failed, but not the errors
        # (hosts, addresses) nor the workers' names.
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    body = {
        "status": "ready" if ready else "not ready",
        "missing": [name for name, check in checks.items() if not check["ok"]],
        "checks": checks,
    }
    response = JsonResponse(body, status=200 if ready else 503)
    if not ready:
        response["Retry-After"] = "5"
    return response


class ProbeMiddleware:
    """Answers /healthz, /readyz and /metrics before anything else can refuse or redirect them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = _probe_view(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response: HttpResponse = JsonResponse({"detail": "Method not allowed."}, status=405)
            response["Allow"] = "GET, HEAD"
        else:
            response = view(request)
        response["X-Content-Type-Options"] = "nosniff"
        response.setdefault("Cache-Control", "no-store")
        return response


def _probe_view(path: str) -> Callable[[HttpRequest], HttpResponse] | None:
    if path == "/healthz":
        return healthz
    if path == "/readyz":
        return readyz
    if path == "/metrics":
        from approvals.ops.metrics import metrics_view

        return metrics_view
    return None


# --- the worker container's healthcheck --------------------------------------------------------------


def worker_is_alive(url: str, prefix: str, hostname: str, max_age: float) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    score = cast(float | None, client.zscore(_heartbeat_key(prefix), hostname))
    return score is not None and time.time() - score <= max_age


def main(argv: list[str]) -> int:
    if argv[1:2] != ["worker"]:
        print("usage: python -m approvals.ops.health worker [celery@hostname]", file=sys.stderr)
        return 2
    hostname = argv[2] if len(argv) > 2 else f"celery@{socket.gethostname()}"
    prefix = os.environ.get("GATE_QUEUE_PREFIX", "") + "gate:obs:"
    max_age = float(os.environ.get("GATE_WORKER_HEARTBEAT_MAX_AGE", DEFAULT_MAX_AGE))
    try:
        alive = worker_is_alive(os.environ["REDIS_URL"], prefix, hostname, max_age)
    except (KeyError, redis.RedisError) as exc:
        print(f"cannot read heartbeats: {exc!r}", file=sys.stderr)
        return 1
    print(f"{hostname}: {'alive' if alive else 'no recent heartbeat'}")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
