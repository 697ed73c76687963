"""Private services for fault-injection tests (tests/ops/test_faults.py).

Each controller runs its own process on a spare loopback port, in a temporary directory, so that
stopping, killing or freezing it harms nothing else on the machine: a ``redis-server``, a PostgreSQL
cluster made with ``initdb`` (run as the ``postgres`` OS user when the tests run as root, since
``initdb`` and ``postgres`` refuse root), and the gate's own processes (uvicorn, a Celery worker,
Celery beat) pointed at them through DATABASE_URL, REDIS_URL and the GATE_* knobs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("GATE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition") -> float:
    """Poll ``check`` until it holds; returns the seconds it took, raises TimeoutError after ``timeout``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} did not hold within {timeout:g}s")
        time.sleep(interval)


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


# --- Redis --------------------------------------------------------------------------------------


class RedisServer:
    """A ``redis-server`` without persistence: a stop loses what was queued, like a lost broker."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.log = directory / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.settimeout(0.5)
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "redis is already running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    shutil.which("redis-server") or "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(self.answers, timeout=10, what=f"redis on port {self.port}")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{_tail(self.log)}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections (the kernel's backlog) but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# --- PostgreSQL -----------------------------------------------------------------------------------


class PostgresServer:
    """A throwaway PostgreSQL cluster (trust auth, no fsync) in its own directory and port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        # Output to a file, not a pipe: a postmaster started by pg_ctl would hold a pipe open.
        output = self.directory / "pg_ctl.out"
        with output.open("wb") as out:
            code = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            ).returncode
        if code != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({code}):\n{_tail(output)}\n{_tail(self.log)}")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    def _options(self) -> str:
        return (
            f"-k {self.directory} -h 127.0.0.1 -p {self.port} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=100"
        )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", self._options(), "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart``: every connection is cut, then the server comes back on the same port."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "-o",
            self._options(),
            "restart",
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a fixed test name, not input
        return self.url(name)

    def __enter__(self) -> PostgresServer:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running():
            with suppress(RuntimeError):
                self.stop("immediate")


# --- the gate's processes -------------------------------------------------------------------------


class AppProcess:
    """One of the gate's processes (uvicorn, a Celery worker, Celery beat) as a subprocess."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is already running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the process and every process of its session (a prefork worker's children)."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def children(self) -> list[int]:
        """The pids of the process's direct children (a prefork worker's pool processes)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self) -> str:
        return _tail(self.log)


class GateStack:
    """Private PostgreSQL and Redis, a migrated database, an agent and a policy, and the gate's
    processes started on demand against them."""

    def __init__(self, directory: Path, **gate_env: str) -> None:
        self.directory = directory
        self.postgres = PostgresServer(directory / "pg")
        self.redis = RedisServer(directory)
        self.gate_env = gate_env
        self.database_url = ""
        self.token = ""
        self.processes: list[AppProcess] = []

    # setup
    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url(0),
            "GATE_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **self.gate_env,
            **extra,
        }
        return env

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def setup(self, policy_file: Path, agent: str = "fault-bot") -> None:
        (self.directory / "pg").mkdir()
        self.postgres.init()
        self.postgres.start()
        self.redis.start()
        self.database_url = self.postgres.create_database("gate")
        self.manage("migrate", "--noinput")
        self.manage("import_policies", str(policy_file))
        out = self.manage("create_agent", agent)
        self.token = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("token:"))

    def close(self) -> None:
        for process in reversed(self.processes):
            process.kill()
        self.redis.kill()
        self.postgres.__exit__()

    # processes
    def server(self, **env: str) -> GateServer:
        port = free_port()
        process = GateServer(
            f"uvicorn-{port}",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "escalation_app.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
            ],
            self.env(**env),
            self.directory,
            base_url=f"http://127.0.0.1:{port}",
        )
        self.processes.append(process)
        process.start()
        process.wait_serving()
        return process

    def worker(self, name: str = "worker", concurrency: int = 1, **env: str) -> AppProcess:
        process = AppProcess(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "escalation_app",
                "worker",
                "-n",
                f"{name}-{free_port()}@localhost",
                "-c",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            self.env(**env),
            self.directory,
        )
        self.processes.append(process)
        process.start()
        wait_for(lambda: b"ready." in process.log.read_bytes() or not process.alive(), timeout=60, what="worker")
        if not process.alive():
            raise RuntimeError(f"worker exited:\n{process.tail()}")
        return process

    def beat(self, **env: str) -> AppProcess:
        schedule = self.directory / f"beat-{free_port()}"
        process = AppProcess(
            "beat",
            [sys.executable, "-m", "celery", "-A", "escalation_app", "beat", "-s", str(schedule), "-l", "INFO"],
            self.env(**env),
            self.directory,
        )
        self.processes.append(process)
        process.start()
        return process

    # the database, read directly (never through the app under test)
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def statuses(self) -> dict[str, str]:
        return {str(pk): status for pk, status in self.query("SELECT id, status FROM approvals_proposedaction")}


class GateServer(AppProcess):
    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], directory: Path, *, base_url: str) -> None:
        super().__init__(name, argv, env, directory)
        self.base_url = base_url

    def wait_serving(self) -> None:
        def serving() -> bool:
            if not self.alive():
                raise RuntimeError(f"server exited:\n{self.tail()}")
            try:
                httpx.get(f"{self.base_url}/api/schema", timeout=1)
            except httpx.HTTPError:
                return False
            return True

        wait_for(serving, timeout=60, interval=0.2, what="server")


@contextmanager
def gate_stack(policy_file: Path, **gate_env: str) -> Iterator[GateStack]:
    """A GateStack in a fresh temporary directory, torn down (every process killed) on exit."""
    directory = Path(tempfile.mkdtemp(prefix="gate-faults-"))
    directory.chmod(0o755)  # the postgres OS user must reach its own subdirectory
    stack = GateStack(directory, **gate_env)
    try:
        stack.setup(policy_file)
        yield stack
    finally:
        stack.close()
        if os.environ.get("GATE_FAULTS_KEEP") != "1":
            shutil.rmtree(directory, ignore_errors=True)
