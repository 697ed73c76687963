"""The gate against its own stack's ceiling: ingest, time to an automatic decision, scaling, profiles.

    .venv/bin/python bench/gate_bench.py [--quick] [--only ingest,decision,scaling,profile]
                                         [--report bench/results/report.md]

Runs a production-like stack on loopback (bench/stack.py: gunicorn serving the WSGI app, a Celery
worker, PostgreSQL, Redis) on its own database (GATE_BENCH_DATABASE_URL, default gate_bench_gate)
and Redis index (GATE_BENCH_REDIS_URL, default db 6, flushed by this script). Every figure has a
baseline measured in the same run behind the same server: a bare DRF endpoint (bench/baseline,
mounted only by the bench settings, DJANGO_SETTINGS_MODULE=bench.settings, which the stack's
processes run with) that authenticates the same way, inserts the same row through the ORM and
queues one trivial Celery task on commit.

Load generators: Debian's ``wrk`` (one thread, keep-alive connections, a Lua script giving every
request its own Idempotency-Key) for throughput; a lean open-loop client on asyncio streams for
latency at a fixed arrival rate (latency from each request's scheduled start). The machine's cores are
shared by the server, the worker, PostgreSQL, Redis and the load generator: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get("GATE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench_gate")
REDIS_URL = os.environ.get("GATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
# This process proposes directly through the services (backlogs, query counts): same database, same broker.
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ["REDIS_URL"] = REDIS_URL
# The project's settings plus the bench-only baseline (bench/settings.py), here and in the stack.
SETTINGS = "bench.settings"
os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")

import django  # noqa: E402
import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

from bench import loadgen  # noqa: E402
from bench.stack import Stack, ensure_database  # noqa: E402
from bench.workload import POLICY, each, small_body, tau_bodies, tau_policy_path  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PROFILES = RESULTS / "profiles"
PY_SPY = Path(sys.executable).parent / "py-spy"

# The stack's configuration; recorded in the report.
STACK_ENV = {
    # The README's settings, defaults included (the connection pool, INFO logs, Celery's connection
    # reuse), but for one: a single agent sends the whole load, so its rate limit is raised (still
    # counted in Redis), not switched off.
    "GATE_AGENT_RATE_PER_MINUTE": "1000000000",
}


@dataclass
class Row:
    figure: str
    gate: str
    baseline: str = ""
    ratio: str = ""
    goal: str = ""
    met: str = ""


@dataclass
class Report:
    sections: dict[str, list[Row]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, section: str, row: Row) -> None:
        self.sections.setdefault(section, []).append(row)
        print(f"[{section}] {row.figure}: {row.gate} | {row.baseline} | {row.ratio} {row.met}", flush=True)

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


# --- setup --------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(DATABASE_URL) as conn:
        pg = str(conn.execute("show server_version").fetchone()[0])  # type: ignore[index]
        max_conn = str(conn.execute("show max_connections").fetchone()[0])  # type: ignore[index]
    info = redis.Redis.from_url(REDIS_URL).info("server")
    wrk_version = subprocess.run([loadgen.wrk_path(), "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "CPU": cpu,
        "Cores": str(os.cpu_count()),
        "Load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "PostgreSQL": f"{pg} (max_connections {max_conn})",
        "Redis": str(info.get("redis_version")),
        "Load generator": f"{wrk_version.strip()} (throughput); an open-loop client on asyncio streams (latency)",
    }


def flush_broker() -> None:
    """Drop queued tasks (this benchmark's own Redis index only)."""
    redis.Redis.from_url(REDIS_URL).flushdb()


def setup_django() -> None:
    django.setup()


def direct_agent() -> Any:
    from approvals.gate.agents import agent_create
    from approvals.models import Agent

    return Agent.objects.filter(name="bench-direct").first() or agent_create(name="bench-direct")[0]


def propose_direct(agent: Any, n: int, *, bare: bool = False) -> list[str]:
    """Store ``n`` proposals through the service (the API's own path minus HTTP), each queuing its
    evaluation on commit; ``bare`` stores bare rows queuing the baseline's trivial task instead."""
    from functools import partial

    from django.db import transaction

    from approvals.gate.services import action_propose, request_fingerprint
    from approvals.models import ActionType, ProposedAction
    from bench.baseline.tasks import touch_row

    refund = ActionType.objects.get(name="refund")
    ids = []
    for _ in range(n):
        key = uuid.uuid4().hex
        body = each(small_body(), key)
        fingerprint = request_fingerprint(body)
        if bare:
            with transaction.atomic():
                action = ProposedAction.objects.create(
                    agent=agent,
                    action_type=refund,
                    params=body["params"],
                    trajectory_raw=body["trajectory"],
                    trajectory=body["trajectory"],
                    request_fingerprint="",
                )
                transaction.on_commit(partial(touch_row.delay, str(action.id)))
        else:
            action, _ = action_propose(
                agent=agent,
                action_type=refund,
                params=body["params"],
                fingerprint=fingerprint,
                trajectory_raw=body["trajectory"],
                idempotency_key=key,
            )
        ids.append(str(action.id))
    return ids


def pending_among(ids: list[str]) -> int:
    from approvals.models import ProposedAction, Status

    return ProposedAction.objects.filter(pk__in=ids, status=Status.PENDING).count()


def wait_drained(ids: list[str], timeout: float = 600) -> float:
    """Seconds until none of ``ids`` is pending (polled every 50 ms)."""
    started = time.perf_counter()
    deadline = started + timeout
    while pending_among(ids):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{pending_among(ids)} of {len(ids)} actions still pending after {timeout}s")
        time.sleep(0.05)
    return time.perf_counter() - started


def stack(**kwargs: Any) -> Stack:
    log_dir = ROOT / "var" / "bench-logs"
    return Stack(DATABASE_URL, REDIS_URL, env=STACK_ENV, settings=SETTINGS, log_dir=log_dir, **kwargs)


def prepare(s: Stack) -> str:
    s.import_policies(POLICY)
    s.import_policies(tau_policy_path())
    return s.create_agent(f"bench-{uuid.uuid4().hex[:6]}")


# --- 1. ingest ----------------------------------------------------------------------------------


def ingest(report: Report, args: argparse.Namespace) -> None:
    section = "1. Ingest (proposals/s, closed loop)"
    seconds, rounds = (4, 1) if args.quick else (6, 3)
    bodies = {"~1 KB, 5-step trajectory": [small_body()], "tau-bench airline (~18 KB)": tau_bodies()}
    # The server the README tells users to run: uvicorn serving escalation_app.asgi with 2 workers.
    with stack(web="uvicorn", web_workers=args.web_workers, worker=False) as s:
        token = prepare(s)
        report.note(
            section,
            f"the README's server: uvicorn serving escalation_app.asgi, {args.web_workers} workers, default "
            "settings (the connection pool on); the Celery worker is stopped during these runs so "
            "that both endpoints measure the HTTP path (the queued tasks are discarded); "
            f"wrk, one thread, a fresh Idempotency-Key per request; {rounds} rounds of {seconds} s per endpoint "
            "(each after a 2 s warm-up), the endpoints alternating, so that a slower minute of the shared "
            "machine falls on both: the medians, their ratio, and the range of the rounds' ratios.",
        )
        endpoints = [("baseline", "/bench/baseline/actions"), ("gate", "/api/v1/actions")]
        for label, items in bodies.items():
            for connections in (16, 64):
                results: dict[str, list[loadgen.WrkResult]] = {"baseline": [], "gate": []}
                for round_ in range(rounds):
                    for name, path in endpoints if round_ % 2 == 0 else endpoints[::-1]:
                        loadgen.wrk(s.base_url + path, token, items, connections=connections, seconds=2)
                        results[name].append(
                            loadgen.wrk(s.base_url + path, token, items, connections=connections, seconds=seconds)
                        )
                        flush_broker()
                gate, bare = (_median_run(results[name]) for name in ("gate", "baseline"))
                ratio = gate.requests_per_second / bare.requests_per_second
                ratios = sorted(
                    g.requests_per_second / b.requests_per_second
                    for g, b in zip(results["gate"], results["baseline"], strict=True)
                )
                spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if rounds > 1 else ""
                gate_errors = sum(r.errors for r in results["gate"])
                bare_errors = sum(r.errors for r in results["baseline"])
                report.add(
                    section,
                    Row(
                        f"{label}, {connections} clients",
                        f"{fmt(gate.requests_per_second)}/s (p99 {fmt(gate.p99_ms, 1)} ms)"
                        + (f" ({gate_errors} errors)" if gate_errors else ""),
                        f"{fmt(bare.requests_per_second)}/s (p99 {fmt(bare.p99_ms, 1)} ms)"
                        + (f" ({bare_errors} errors)" if bare_errors else ""),
                        f"{ratio:.2f}x{spread}",
                        "≥ 0.80x",
                        "yes" if ratio >= 0.8 and not gate_errors else "no",
                    ),
                )


def _median_run(runs: list[loadgen.WrkResult]) -> loadgen.WrkResult:
    return sorted(runs, key=lambda r: r.requests_per_second)[len(runs) // 2]


# --- 2. time to an automatic decision -------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of the children it has reaped (PostgreSQL's backends that closed,
    gunicorn's recycled workers): utime + stime + cutime + cstime."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def cpu_by_role(s: Stack) -> Counter[str]:
    """CPU seconds used so far by the web server, the Celery worker, PostgreSQL, Redis and this
    process (the load generator), from /proc."""
    roles: Counter[str] = Counter()
    for pid in s.server_pids():
        roles["web"] += _cpu_seconds(pid)
    for pid in s.worker_pids():
        roles["worker"] += _cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name.startswith("postgres"):
                roles["PostgreSQL"] += _cpu_seconds(int(entry.name))
            elif name.startswith("redis-server"):
                roles["Redis"] += _cpu_seconds(int(entry.name))
    roles["load generator"] += _cpu_seconds(os.getpid())
    return roles


CPU_ROLES = ("web", "worker", "PostgreSQL", "Redis", "load generator")


def decision(report: Report, args: argparse.Namespace) -> None:
    section = "2. Time to an automatic decision (open loop)"
    seconds = 8 if args.quick else 20
    rates = [args.rate] + ([] if args.quick else [r for r in (50.0, 75.0) if r < args.rate])
    with stack(web="gunicorn", web_workers=args.web_workers, threads=8, celery_workers=2) as s:
        token = prepare(s)
        report.note(
            section,
            f"POST with ?wait=10 at an open-loop {', '.join(f'{r:g}' for r in rates)} proposals/s, {seconds} s "
            f"each (after a 3 s warm-up; {seconds // 2} s at the lower rates); gunicorn, {args.web_workers} gthread "
            "workers x 8 threads; Celery worker -c 2. Baseline: the bare endpoint holding the request until its "
            "trivial task has updated the row (a bare Celery round trip, through the same Redis pub/sub wait). "
            "Latency from each request's scheduled start. CPU per action: what each process used over the run "
            "(/proc), divided by the proposals sent; the two cores give 20 ms per action at 100/s.",
        )
        body = small_body()
        for rate in rates:
            length = seconds if rate == args.rate else seconds // 2
            out, cpu = {}, {}
            for name, path in (("baseline", "/bench/baseline/actions?wait=10"), ("gate", "/api/v1/actions?wait=10")):
                loadgen.open_loop(s.base_url + path, token, body, rate=rate, seconds=3)
                before = cpu_by_role(s)
                out[name] = loadgen.open_loop(s.base_url + path, token, body, rate=rate, seconds=length)
                used = cpu_by_role(s)
                cpu[name] = {role: (used[role] - before[role]) * 1000 / out[name].sent for role in CPU_ROLES}
            gate, bare = out["gate"], out["baseline"]
            for p in (50, 99):
                g, b = gate.percentile(p), bare.percentile(p)
                goal = 1.5 * b + 10
                report.add(
                    section,
                    Row(
                        f"p{p} POST → auto_approved at {rate:g}/s",
                        f"{fmt(g, 1)} ms",
                        f"{fmt(b, 1)} ms",
                        f"{g / b:.2f}x",
                        f"≤ 1.5x bare + 10 ms = {fmt(goal, 1)} ms" if p == 99 else "",
                        ("yes" if g <= goal else "no") if p == 99 else "",
                    ),
                )
            report.add(
                section,
                Row(
                    f"answers at {rate:g}/s (status: count)",
                    ", ".join(f"{k}: {v}" for k, v in sorted(gate.statuses.items())),
                    ", ".join(f"{k}: {v}" for k, v in sorted(bare.statuses.items())),
                ),
            )
            if rate == args.rate:
                for role in CPU_ROLES:
                    g, b = cpu["gate"][role], cpu["baseline"][role]
                    report.add(
                        section,
                        Row(f"CPU per action at {rate:g}/s: {role}", f"{g:.1f} ms", f"{b:.1f} ms", f"{g / b:.2f}x"),
                    )
                g, b = sum(cpu["gate"].values()), sum(cpu["baseline"].values())
                report.add(
                    section, Row(f"CPU per action at {rate:g}/s: all", f"{g:.1f} ms", f"{b:.1f} ms", f"{g / b:.2f}x")
                )


# --- 3. scaling -----------------------------------------------------------------------------------


def scaling(report: Report, args: argparse.Namespace) -> None:
    section = "3. Scaling"
    seconds = 4 if args.quick else 8
    body = [small_body()]
    for workers in (1, 2, 4):
        with stack(web="gunicorn", web_workers=workers, worker=False) as s:
            token = prepare(s)
            rates = {}
            for name, path in (("baseline", "/bench/baseline/actions"), ("gate", "/api/v1/actions")):
                loadgen.wrk(s.base_url + path, token, body, connections=64, seconds=2)
                rates[name] = loadgen.wrk(s.base_url + path, token, body, connections=64, seconds=seconds)
                flush_broker()
            g, b = rates["gate"].requests_per_second, rates["baseline"].requests_per_second
            report.add(
                section,
                Row(f"ingest, {workers} gunicorn worker(s), 64 clients", f"{fmt(g)}/s", f"{fmt(b)}/s", f"{g / b:.2f}x"),
            )

    setup_django()
    n = 300 if args.quick else 1000
    with stack(web="gunicorn", web_workers=2, threads=8, worker=False) as s:
        token = prepare(s)
        agent = direct_agent()
        flush_broker()
        for processes in (1, 2, 4):
            timings = {}
            for name, bare in (("baseline", True), ("gate", False)):
                s.stop_worker()
                ids = propose_direct(agent, n, bare=bare)
                s.set_celery_workers(processes)
                # From the moment the worker answers: what is left of the backlog, and how fast it goes.
                left = pending_among(ids)
                timings[name] = left / wait_drained(ids)
            g, b = timings["gate"], timings["baseline"]
            report.add(
                section,
                Row(
                    f"decisions/s, Celery -c {processes}, backlog of {n}",
                    f"{fmt(g)}/s",
                    f"{fmt(b)}/s (trivial task)",
                    f"{g / b:.2f}x",
                ),
            )
        report.note(
            section,
            "Decisions/s: a backlog of actions queued with the worker stopped, then `celery worker -c N` "
            "started; from the moment it answers a ping, the actions still pending over the time until none is. "
            "Ingest: gunicorn with N sync workers, wrk with 64 connections.",
        )

        # Latency against the queue's length: a probe proposed behind a backlog of pending actions.
        s.set_celery_workers(2)
        for backlog in (0, 100, 300) if args.quick else (0, 250, 1000, 2500):
            s.stop_worker()
            ids = propose_direct(agent, backlog)
            s.set_celery_workers(2)
            waiting = pending_among(ids)
            started = time.perf_counter()
            response = httpx.post(
                f"{s.base_url}/api/v1/actions?wait=30",
                json=each(small_body(), uuid.uuid4().hex),
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
                timeout=60,
            )
            latency = (time.perf_counter() - started) * 1000
            status = response.json().get("status")
            per_item = f"{latency / waiting:.2f} ms per queued action" if waiting else ""
            report.add(
                section,
                Row(
                    f"decision latency behind {fmt(waiting)} queued actions",
                    f"{fmt(latency, 1)} ms ({status})",
                    per_item,
                ),
            )
            wait_drained(ids)
        report.note(section, "Queue length: Celery -c 2; the probe waits with ?wait=30 behind the backlog (FIFO).")


# --- 4. profiles and query counts -------------------------------------------------------------------


def summarize_collapsed(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed (raw) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack_text.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples\n", "| self % | function |", "|---:|---|"]
    lines += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in own.most_common(top)]
    lines += ["", "| inclusive % | function |", "|---:|---|"]
    lines += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def py_spy(pid: int, name: str, seconds: int) -> list[subprocess.Popen[bytes]]:
    PROFILES.mkdir(parents=True, exist_ok=True)
    common = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--nonblocking"]
    return [
        subprocess.Popen([*common, "--format", "raw", "-o", str(PROFILES / f"{name}.txt")], stdout=subprocess.DEVNULL),
        subprocess.Popen(
            [*common, "--format", "flamegraph", "-o", str(PROFILES / f"{name}.svg")], stdout=subprocess.DEVNULL
        ),
    ]


def query_counts(report: Report, section: str) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from approvals.gate.agents import agent_create
    from approvals.gate.services import action_evaluate

    _agent, token = agent_create(name=f"bench-q-{uuid.uuid4().hex[:6]}")
    client = Client(HTTP_HOST="127.0.0.1")
    lines = []
    counts = []
    for _ in range(2):  # the second request is the steady state (caches warm)
        with CaptureQueriesContext(connection) as ctx:
            response = client.post(
                "/api/v1/actions",
                json.dumps(each(small_body(), uuid.uuid4().hex)),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {token}",
                HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
            )
        assert response.status_code == 201, response.content
        counts.append(len(ctx.captured_queries))
    lines += ["# POST /api/v1/actions", *(q["sql"][:300] for q in ctx.captured_queries)]
    action_id = response.json()["id"]
    with CaptureQueriesContext(connection) as ctx:
        action_evaluate(action_id=action_id)
    evaluate = len(ctx.captured_queries)
    lines += ["", "# evaluate_action (auto-approve)", *(q["sql"][:300] for q in ctx.captured_queries)]
    (PROFILES / "queries.txt").write_text("\n".join(lines) + "\n")
    report.add(section, Row("SQL queries per POST /api/v1/actions (201)", str(counts[-1])))
    report.add(section, Row("SQL queries per evaluation (auto-approved)", str(evaluate)))


def profile(report: Report, args: argparse.Namespace) -> None:
    section = "4. Profiles"
    seconds = 6 if args.quick else 12
    PROFILES.mkdir(parents=True, exist_ok=True)
    setup_django()
    with stack(web="gunicorn", web_workers=2, worker=False) as s:
        token = prepare(s)
        query_counts(report, section)
        url = s.base_url + "/api/v1/actions"
        loadgen.wrk(url, token, [small_body()], connections=16, seconds=2)
        server_workers = s.server_pids()[1:]
        spies = py_spy(server_workers[0], "server", seconds - 2)
        result = loadgen.wrk(url, token, [small_body()], connections=16, seconds=seconds)
        for spy in spies:
            spy.wait()
        flush_broker()
        report.add(section, Row("ingest while profiled (~1 KB, 16 clients)", f"{fmt(result.requests_per_second)}/s"))

        agent = direct_agent()
        n = 300 if args.quick else 800
        ids = propose_direct(agent, n)
        s.set_celery_workers(1)
        children = s.worker_pids()[1:]
        spies = py_spy(children[-1], "worker", seconds)
        wait_drained(ids)
        for spy in spies:
            spy.wait()
    for name in ("server", "worker"):
        raw = PROFILES / f"{name}.txt"
        if raw.exists():
            (PROFILES / f"{name}-summary.md").write_text(
                f"# py-spy: {name} under load ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n\n" + summarize_collapsed(raw)
            )
    report.note(
        section,
        "py-spy (200 Hz, non-blocking) on one gunicorn worker under wrk (16 clients, ~1 KB body) and on one "
        "Celery process draining a backlog: flame graphs `bench/results/profiles/{server,worker}.svg`, "
        "collapsed stacks `*.txt`, top functions `*-summary.md`; the SQL of one request in `queries.txt`.",
    )


def connection_reuse(report: Report, args: argparse.Namespace) -> None:
    """The README's server (uvicorn, 2 workers) with the connection pool, as deployed by default,
    against ``GATE_DB_POOL=0`` (a connection per request)."""
    section = "4. Profiles"
    seconds = 4 if args.quick else 8
    rates = {}
    for pool in ("1", "0"):
        env = {**STACK_ENV, "GATE_DB_POOL": pool}
        with Stack(
            DATABASE_URL,
            REDIS_URL,
            web="uvicorn",
            web_workers=args.web_workers,
            env=env,
            settings=SETTINGS,
            log_dir=ROOT / "var" / "bench-logs",
            worker=False,
        ) as s:
            token = prepare(s)
            url = s.base_url + "/api/v1/actions"
            loadgen.wrk(url, token, [small_body()], connections=16, seconds=2)
            rates[pool] = loadgen.wrk(url, token, [small_body()], connections=16, seconds=seconds).requests_per_second
            flush_broker()
    report.add(
        section,
        Row(
            "ingest under the README's uvicorn command: the connection pool (default) vs GATE_DB_POOL=0",
            f"{fmt(rates['1'])}/s",
            f"{fmt(rates['0'])}/s",
            f"{rates['1'] / rates['0']:.2f}x",
        ),
    )


# --- report -------------------------------------------------------------------------------------


def write_report(path: Path, report: Report, info: dict[str, str], args: argparse.Namespace, took: float) -> None:
    lines = [
        "# Autonomy Gate: benchmark report",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` "
        f"(`bench/gate_bench.py{' --quick' if args.quick else ''}`, {took / 60:.1f} min). "
        "Every figure is set against a baseline measured in the same run on the same stack; the "
        "absolute numbers depend on the machine and its load, the ratios much less.",
        "",
        "## Machine",
        "",
        *(f"- **{k}**: {v}" for k, v in info.items()),
        f"- **Load average at end**: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        "## Configuration",
        "",
        "- Stack (bench/stack.py) on loopback: `gunicorn escalation_app.wsgi` and "
        "`celery -A escalation_app worker`, PostgreSQL and Redis on the same machine; DEBUG off.",
        f"- Environment: `DJANGO_SETTINGS_MODULE={SETTINGS}`, "
        f"{', '.join(f'`{k}={v}`' for k, v in STACK_ENV.items())}; "
        "Celery: JSON only, acks late, prefetch 1, time limits 20/30 s, queues `gate` and `gate-webhooks`.",
        "- Baseline (bench/baseline, mounted only by the bench settings `bench.settings`): the same DRF "
        "authentication, throttle and JSON parser, the action type resolved from its name (one indexed "
        "look-up), one ORM insert of a ProposedAction of the same size (the trajectory stored twice, as "
        "the gate stores it as given and normalised), one Celery task queued on commit that updates the row.",
        "",
    ]
    for section, rows in report.sections.items():
        lines += [f"## {section}", ""]
        lines += [f"{note}" for note in report.notes.get(section, [])]
        lines += ["", "| Figure | Gate | Baseline | Ratio | Goal | Met |", "|---|---:|---:|---:|---|---|"]
        lines += [f"| {r.figure} | {r.gate} | {r.baseline} | {r.ratio} | {r.goal} | {r.met} |" for r in rows]
        lines.append("")
    for name, title in (
        ("policy_eval.md", "Policy evaluation per core"),
        ("queue_page.md", "Queue page at 100,000 waiting items"),
        ("eval_sweep.md", "Evaluation sweep at 1,000,000 labelled actions"),
        ("soak.md", "Soak"),
    ):
        other = RESULTS / name
        if other.exists():
            text = other.read_text().strip().splitlines()
            body = [line for line in text if not line.startswith("# ")]
            lines += [f"## {title} (bench/results/{name})", "", *body, ""]
    path.write_text("\n".join(lines))


SECTIONS = {"ingest": ingest, "decision": decision, "scaling": scaling, "profile": profile, "reuse": connection_reuse}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test of the benchmark)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop proposals/s for the decision latency")
    parser.add_argument("--report", default=str(RESULTS / "report.md"))
    args = parser.parse_args()
    if not REDIS_URL.rstrip("/").rsplit("/", 1)[-1].isdigit():
        raise SystemExit("GATE_BENCH_REDIS_URL must name a Redis database index (it is flushed)")
    started = time.perf_counter()
    ensure_database(DATABASE_URL)
    flush_broker()
    info = machine()
    report = Report()
    for name in args.only.split(","):
        SECTIONS[name.strip()](report, args)
    write_report(Path(args.report), report, info, args, time.perf_counter() - started)
    print(f"report: {args.report}")


if __name__ == "__main__":
    main()
