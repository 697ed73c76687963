"""This checkout against another commit of the gate, in one run: did a change keep the speed?

    .venv/bin/python bench/compare_commits.py [--base REV] [--rounds 3] [--seconds 6] [--backlog 600]

The other commit is checked out into a temporary git worktree and both run side by side, each as the
README tells users to run it, with default settings: ``uvicorn escalation_app.asgi:application
--workers 2`` and ``celery -A escalation_app worker``, each with its own PostgreSQL database and Redis
database on loopback. Measured alternately, base then head then head then base, so that a slower
minute of the shared machine falls on both:

- ingest: proposals/s (wrk, ~1 KB body with a 5-step trajectory, 16 and 64 clients), the worker
  stopped so that both measure the HTTP path;
- decisions/s per worker process: a backlog of ``--backlog`` proposals queued with the worker
  stopped, then ``celery worker -c 1`` started; the rate from its first decision to its last, by the
  rows' own ``evaluated_at``.

Only settings neither release reads differently are set: one agent sends the whole load, so its rate
limit is raised. Report: bench/results/compare_commits.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench import loadgen  # noqa: E402
from bench.stack import Stack, ensure_database  # noqa: E402
from bench.workload import POLICY, small_body  # noqa: E402

PG = os.environ.get("GATE_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("GATE_BENCH_REDIS", "redis://127.0.0.1:6379")
ENV = {"GATE_AGENT_RATE_PER_MINUTE": "1000000000", "GATE_LOG_LEVEL": "INFO"}


def pending(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select count(*) from approvals_proposedaction where status = 'pending'").fetchone()
    return int(row[0]) if row else 0


STALL_SECONDS = 60


def drain(stack: Stack) -> None:
    """Until nothing is pending; raises (with the worker's log) when nothing was decided for
    ``STALL_SECONDS``: a lost broker message (another process flushing the Redis database, say)
    would otherwise keep the run waiting for ever."""
    stack.set_celery_workers(1)
    left, since = pending(stack.database_url), time.monotonic()
    while left:
        time.sleep(0.05)
        now_left = pending(stack.database_url)
        if now_left < left:
            left, since = now_left, time.monotonic()
        elif time.monotonic() - since > STALL_SECONDS:
            raise RuntimeError(f"{left} actions stayed pending for {STALL_SECONDS} s:\n{stack.logs('worker')}")


def backlog_drain(stack: Stack, token: str, count: int) -> float:
    """Decisions/s of ``celery worker -c 1`` over about ``count`` actions queued while it was stopped
    (what earlier rounds left pending is decided first, so that both commits drain the same)."""
    drain(stack)
    stack.stop_worker()
    queued = 0
    while queued < count:  # wrk runs whole seconds: a few more than count, about as many for both
        loadgen.wrk(stack.base_url + "/api/v1/actions", token, [small_body()], connections=4, seconds=1)
        queued = pending(stack.database_url)
    with psycopg.connect(stack.database_url) as conn:
        started = conn.execute("select now()").fetchone()[0]  # type: ignore[index]
    drain(stack)
    # From the first decision to the last, by the rows' own times: the worker's start is not counted.
    with psycopg.connect(stack.database_url) as conn:
        count, seconds = conn.execute(  # type: ignore[misc]
            "select count(*), extract(epoch from max(evaluated_at) - min(evaluated_at)) "
            "from approvals_proposedaction where evaluated_at >= %s",
            [started],
        ).fetchone()
    return (int(count) - 1) / float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="8726594", help="the commit to compare against (default: before issue 14)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--backlog", type=int, default=600)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for both (a release ignores what it does not read)",
    )
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "compare_commits.md"))
    args = parser.parse_args()
    settings = {**ENV, **dict(item.split("=", 1) for item in args.env)}
    head_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    base_dir = Path(tempfile.mkdtemp(prefix="gate-base-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(base_dir), args.base], cwd=ROOT, check=True)
    trees = {"base": base_dir, "head": ROOT}
    stacks: dict[str, Stack] = {}
    tokens: dict[str, str] = {}
    ingest: dict[tuple[str, int], list[float]] = {}
    drains: dict[str, list[float]] = {"base": [], "head": []}
    try:
        for index, (name, tree) in enumerate(trees.items()):
            database = f"{PG}/gate_compare_{name}"
            ensure_database(database, recreate=True)
            stack = Stack(
                database, f"{REDIS}/{4 + index}", web="uvicorn", web_workers=2, worker=False, env=settings, root=tree
            )
            stack.start()
            stack.import_policies(POLICY)
            stacks[name], tokens[name] = stack, stack.create_agent(f"compare-{name}")
        body = [small_body()]
        for round_ in range(args.rounds):
            order = ["base", "head"] if round_ % 2 == 0 else ["head", "base"]
            for connections in (16, 64):
                for name in order:
                    url = stacks[name].base_url + "/api/v1/actions"
                    loadgen.wrk(url, tokens[name], body, connections=connections, seconds=2)
                    run = loadgen.wrk(url, tokens[name], body, connections=connections, seconds=args.seconds)
                    ingest.setdefault((name, connections), []).append(run.requests_per_second)
            for name in order:
                drains[name].append(backlog_drain(stacks[name], tokens[name], args.backlog))
    finally:
        for stack in stacks.values():
            stack.stop()
        subprocess.run(["git", "worktree", "remove", "--force", str(base_dir)], cwd=ROOT, check=False)

    settings_text = "".join(f" --env {item}" for item in args.env)
    lines = [
        "# This checkout against another commit",
        "",
        f"`.venv/bin/python bench/compare_commits.py --base {args.base} --rounds {args.rounds} --seconds "
        f"{args.seconds:g} --backlog {args.backlog}{settings_text}`: head {head_rev.stdout.strip()} "
        f"against base {args.base}, on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL, Redis, all "
        f"on the same cores; {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Both as the README runs them "
        "(uvicorn, 2 workers; Celery), default settings; alternating rounds; medians, and each round's figure.",
        "",
        "| figure | base | head | head / base | rounds (base; head) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]

    def row(label: str, base: list[float], head: list[float]) -> None:
        b, h = statistics.median(base), statistics.median(head)
        rounds = ", ".join(f"{v:.0f}" for v in base) + "; " + ", ".join(f"{v:.0f}" for v in head)
        lines.append(f"| {label} | {b:.0f} | {h:.0f} | {h / b:.2f} | {rounds} |")

    for connections in (16, 64):
        row(
            f"ingest, proposals/s, {connections} clients",
            ingest[("base", connections)],
            ingest[("head", connections)],
        )
    row("decisions/s, one worker process (`-c 1`), draining a backlog", drains["base"], drains["head"])
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
