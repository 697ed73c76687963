"""Fixtures for tests that run against the real services: PostgreSQL, Redis and, for tests marked
``worker``, a real ``celery worker`` process consuming from Redis."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import redis
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.gate.policies import policies_import
from bench.workload import REFUND_TYPE
from escalation_app.celery import app as celery_app
from tests.factories import AgentFactory, ReviewerFactory
from tests.smtp import LoopbackSMTP

ROOT = Path(__file__).resolve().parent.parent

TEST_POLICY: dict[str, Any] = {
    "version": 1,
    "action_types": [
        REFUND_TYPE,
        {"name": "escalate_ticket", "params_schema": {"type": "object"}, "mode": "review"},
        {"name": "delete_account", "params_schema": {"type": "object"}, "mode": "block"},
    ],
}

LOOKED_UP = [
    {"kind": "message", "role": "user", "content": "My order A-1 arrived broken"},
    {"kind": "tool_call", "tool": "get_order", "args": {"order_id": "A-1"}, "result": '{"total": 80}'},
]


def _answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite runs against real PostgreSQL and Redis: a missing service fails it, never skips it."""
    missing = [
        name
        for name, url, port in (
            ("PostgreSQL", os.environ["DATABASE_URL"], 5432),
            ("Redis", os.environ["REDIS_URL"], 6379),
        )
        if not _answers(url, port)
    ]
    if missing:
        pytest.exit(f"{' and '.join(missing)} not reachable; start them (see README, 'Tests')", returncode=3)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()


@pytest.fixture(autouse=True)
def _celery_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    """Outside tests marked ``worker``, tasks run in-process (eagerly) when their transaction's
    on-commit callbacks run; ``worker`` tests send them through Redis to a real worker."""
    eager = request.node.get_closest_marker("worker") is None
    previous = celery_app.conf.task_always_eager
    # Settings came in under the CELERY_ namespace, so they are changed under that name.
    celery_app.conf.update(CELERY_TASK_ALWAYS_EAGER=eager)
    yield
    celery_app.conf.update(CELERY_TASK_ALWAYS_EAGER=previous)


@pytest.fixture
def policy_v1(db: None) -> int:
    return policies_import(document=TEST_POLICY, actor="test")


@pytest.fixture
def agent(db: None) -> Any:
    return AgentFactory(name="support-bot")


@pytest.fixture
def agent_client(agent: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    return client


@pytest.fixture
def reviewer(db: None) -> Any:
    return ReviewerFactory(username="lead")


@pytest.fixture
def reviewer_client(reviewer: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=reviewer).key}")
    return client


@pytest.fixture
def propose(agent_client: APIClient, django_capture_on_commit_callbacks: Any) -> Any:
    """POST a proposal, run what its commit queued (the eager evaluation), and return the response
    with ``response.action``: the action as a GET answers after that."""

    def _propose(body: dict[str, Any], *, client: APIClient | None = None, query: str = "", **headers: Any) -> Any:
        client = client or agent_client
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(f"/api/v1/actions{query}", body, format="json", **headers)
        if response.status_code in (200, 201):
            response.action = client.get(response.json()["url"]).json()
        return response

    return _propose


# --- a real Celery worker -------------------------------------------------------------------------


def subprocess_database_url() -> str:
    """DATABASE_URL pointing at the test database pytest-django made, for server subprocesses."""
    from django.db import connection

    return urlparse(os.environ["DATABASE_URL"])._replace(path="/" + connection.settings_dict["NAME"]).geturl()


WORKER_LOGS: dict[str, Path] = {}


@pytest.fixture
def celery_worker_log(celery_worker_process: str) -> Path:
    """The log file of the session's worker process."""
    return WORKER_LOGS[celery_worker_process]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[LoopbackSMTP]:
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives; the worker sends its
    e-mail there (tests/notifications)."""
    server = LoopbackSMTP()
    yield server
    server.stop()


@contextlib.contextmanager
def celery_worker(log_path: Path, *, env: dict[str, str] | None = None) -> Iterator[str]:
    """``celery -A escalation_app worker`` as a subprocess on the test database and test Redis
    (``env`` adds to or overrides its environment); yields its node name once it answers a ping."""
    node = f"test-{uuid.uuid4().hex[:8]}@localhost"
    # JSON lines, as a deployed worker writes them (tests/ops/test_observability.py reads them).
    environment = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "GATE_LOG_LEVEL": "INFO",
        "GATE_LOG_FORMAT": "json",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "escalation_app",
                "worker",
                "-n",
                node,
                "-c",
                "2",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(destination=[node], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{log_path.read_text()[-4000:]}")
        WORKER_LOGS[node] = log_path
        yield node
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any, smtp_server: LoopbackSMTP
) -> Iterator[str]:
    """The session's worker, sending e-mail to the loopback SMTP server."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    smtp = {"EMAIL_HOST": smtp_server.host, "EMAIL_PORT": str(smtp_server.port)}
    with celery_worker(log_path, env=smtp) as node:
        yield node


# --- servers on loopback ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(base_url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-4000:]}")
        try:
            httpx.get(f"{base_url}/api/schema", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@contextlib.contextmanager
def uvicorn_server(log: Path, *, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> Iterator[str]:
    """uvicorn serving escalation_app.asgi:application (HTTP and websockets) on a free loopback port,
    on the test database (``env`` adds to or overrides the environment); yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "escalation_app.asgi:application"]
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": subprocess_database_url(), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, log)
        yield base
    finally:
        stop(server)


@pytest.fixture
def asgi_server(celery_worker_process: str, tmp_path: Path) -> Iterator[str]:
    """uvicorn with two worker processes on the test database, with the real worker evaluating what
    it stores."""
    with uvicorn_server(tmp_path / "uvicorn.log", args=("--workers", "2")) as base:
        yield base
