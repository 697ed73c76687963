"""A production-like Autonomy Gate stack on loopback, for benchmarks and the soak.

    from bench.stack import Stack

    with Stack("postgres://postgres@127.0.0.1:5432/gate_bench_x", "redis://127.0.0.1:6379/6",
               web="gunicorn", web_workers=2, celery_workers=1) as stack:
        stack.import_policies(document)            # a policy document (dict) or a YAML/JSON file path
        token = stack.create_agent("bench-agent")  # the agent's bearer token
        httpx.post(f"{stack.base_url}/api/v1/actions", ...)
        stack.set_celery_workers(4)                # restarts the worker with -c 4
        print(stack.logs())

``web`` is ``"gunicorn"`` (gunicorn workers serving escalation_app.wsgi, the usual HTTP
deployment: sync workers, or gthread workers with ``threads`` > 1) or ``"uvicorn"`` (uvicorn
workers serving escalation_app.asgi: HTTP and websockets).
On entry: ``manage.py migrate``, then the HTTP server and ``celery -A escalation_app worker -c N``
(plus ``celery beat`` with ``beat=True``), waiting until both answer; on exit each is stopped with
SIGTERM (a warm shutdown) and killed only if it does not stop. ``env`` is added to the environment
of every process (e.g. ``{"GATE_CONN_MAX_AGE": "60"}``); ``settings`` is their DJANGO_SETTINGS_MODULE
(the project's by default; ``"bench.settings"`` adds the bench-only baseline at /bench/baseline/).
The databases and Redis index are the caller's: nothing is flushed or dropped here
(``ensure_database`` creates a missing database).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import httpx
import psycopg
import redis
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_database(url: str, *, recreate: bool = False) -> None:
    """Create the database ``url`` names if it does not exist (dropping it first with ``recreate``)."""
    name = urlparse(url).path.lstrip("/")
    admin = urlparse(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if exists and recreate:
            conn.execute(f'drop database "{name}" with (force)')
            exists = None
        if not exists:
            conn.execute(f'create database "{name}"')


class Stack:
    def __init__(
        self,
        database_url: str,
        redis_url: str,
        *,
        web: str = "gunicorn",
        web_workers: int = 2,
        threads: int = 1,
        celery_workers: int = 1,
        beat: bool = False,
        env: dict[str, str] | None = None,
        log_dir: str | Path | None = None,
        migrate: bool = True,
        worker: bool = True,
        settings: str = "escalation_app.settings",
        root: Path = ROOT,
    ) -> None:
        if web not in ("gunicorn", "uvicorn"):
            raise ValueError(f"web must be 'gunicorn' or 'uvicorn', not {web!r}")
        self.root = root  # the checkout whose code runs (bench/compare_commits.py runs another's)
        self.database_url = database_url
        self.redis_url = redis_url
        self.web = web
        self.web_workers = web_workers
        self.threads = threads
        self.celery_workers = celery_workers
        self.beat = beat
        self.migrate = migrate
        self.start_worker = worker
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="gate-stack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "GATE_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.beat_process: subprocess.Popen[bytes] | None = None
        self.worker_node = ""
        # Not the current app: shared tasks sent from this process keep using the project's app.
        self._control = Celery(broker=redis_url, set_as_current=False)

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        # The stack owns its Redis database: tasks an earlier run left queued there (a run that was
        # stopped midway) would otherwise be worked through first and counted in this run's figures.
        redis.Redis.from_url(self.redis_url).flushdb()
        if self.migrate:
            self.manage("migrate", "--noinput")
        self.server = self._spawn("server", self._server_command())
        if self.start_worker:
            self._start_worker()
        if self.beat:
            schedule = self.log_dir / "celerybeat-schedule"
            self.beat_process = self._spawn(
                "beat",
                [PYTHON, "-m", "celery", "-A", "escalation_app", "beat", "-l", "WARNING", "-s", str(schedule)],
            )
        self._wait_serving()

    def stop(self) -> None:
        for process in (self.beat_process, self.server, self.worker):
            if process is not None:
                _terminate(process)
        self.beat_process = self.server = self.worker = None
        self._control.close()

    def _server_command(self) -> list[str]:
        bind = f"127.0.0.1:{self.port}"
        if self.web == "gunicorn":
            return [
                PYTHON,
                "-m",
                "gunicorn",
                "escalation_app.wsgi:application",
                "--bind",
                bind,
                "--workers",
                str(self.web_workers),
                "--threads",
                str(self.threads),
                "--backlog",
                "2048",
                "--log-level",
                "warning",
            ]
        return [
            PYTHON,
            "-m",
            "uvicorn",
            "escalation_app.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.web_workers),
            "--no-access-log",
        ]

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                command, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _start_worker(self) -> None:
        self.worker_node = f"bench-{uuid.uuid4().hex[:8]}@localhost"
        self.worker = self._spawn(
            "worker",
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "escalation_app",
                "worker",
                "-n",
                self.worker_node,
                "-c",
                str(self.celery_workers),
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
        )
        deadline = time.monotonic() + 60
        while not self._control.control.ping(destination=[self.worker_node], timeout=0.5):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{self.logs('worker')}")

    def _wait_serving(self) -> None:
        assert self.server is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.logs('server')}")
            try:
                httpx.get(f"{self.base_url}/api/schema", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{self.logs('server')}")

    def set_celery_workers(self, n: int) -> None:
        """(Re)start the Celery worker with ``-c n`` prefork processes (a warm shutdown first)."""
        self.stop_worker()
        self.celery_workers = n
        self._start_worker()

    def stop_worker(self) -> None:
        """Stop the Celery worker (a warm shutdown); queued tasks wait in Redis."""
        if self.worker is not None:
            _terminate(self.worker)
            self.worker = None

    # --- inspection and setup ----------------------------------------------------------------

    def server_pids(self) -> list[int]:
        """The HTTP server's processes: the master and its workers."""
        return _tree(self.server.pid) if self.server else []

    def worker_pids(self) -> list[int]:
        return _tree(self.worker.pid) if self.worker else []

    def logs(self, name: str | None = None, tail: int = 8000) -> str:
        names = [name] if name else ["server", "worker", "beat"]
        parts = []
        for item in names:
            path = self.log_dir / f"{item}.log"
            if path.exists():
                parts.append(f"--- {item} ---\n" + path.read_text(errors="replace")[-tail:])
        return "\n".join(parts)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=self.root, env=self.env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def create_agent(self, name: str | None = None) -> str:
        """Create an agent allowed every action type; returns its bearer token."""
        out = self.manage("create_agent", name or f"bench-{uuid.uuid4().hex[:8]}")
        return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("token: "))

    def import_policies(self, document: dict[str, Any] | str | Path) -> str:
        """Import a policy document (a dict, or a YAML/JSON file's path)."""
        if isinstance(document, dict):
            path = self.log_dir / f"policy-{uuid.uuid4().hex[:8]}.json"
            path.write_text(json.dumps(document))
            document = path
        return self.manage("import_policies", str(document))

    def create_reviewer(self, username: str | None = None) -> str:
        """A reviewer (approvals.review_action) with a DRF token (``Authorization: Token <key>``); returns the key."""
        name = username or f"bench-reviewer-{uuid.uuid4().hex[:6]}"
        code = (
            "from django.contrib.auth.models import Permission, User\n"
            "from rest_framework.authtoken.models import Token\n"
            f"u, _ = User.objects.get_or_create(username={name!r}, defaults={{'is_staff': True}})\n"
            "u.user_permissions.add(Permission.objects.get(codename='review_action'))\n"
            "print(Token.objects.get_or_create(user=u)[0].key)\n"
        )
        return self.manage("shell", "-c", code).strip().splitlines()[-1]


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    result, todo = [], [pid]
    while todo:
        current = todo.pop()
        result.append(current)
        todo.extend(children.get(current, []))
    return result


def _terminate(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
