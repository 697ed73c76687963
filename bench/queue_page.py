"""Server-side render time of the review queue page with 100,000 waiting actions.

    .venv/bin/python bench/queue_page.py [--items 100000] [--runs 40] [--report bench/results/queue_page.md]

Uses its own PostgreSQL database (GATE_BENCH_DATABASE_URL, default gate_bench on 127.0.0.1), filled
once. The baseline, in the same run: the same page over an empty queue (the page's fixed cost).
Goal: under 150 ms at the median with 100,000 waiting items.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get("GATE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench")
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")

import django  # noqa: E402
import psycopg  # noqa: E402


def ensure_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def fill(items: int) -> None:
    from django.core.management import call_command

    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.models import ActionType, Agent, ProposedAction, Status

    call_command("migrate", verbosity=0)
    if ProposedAction.objects.filter(status=Status.NEEDS_REVIEW).count() == items:
        return
    ProposedAction.objects.all().delete()
    if not ActionType.objects.filter(name="refund").exists():
        policies_import(
            document={"version": 1, "action_types": [{"name": "refund", "params_schema": {"type": "object"}}]},
            actor="bench",
        )
    refund = ActionType.objects.get(name="refund")
    agents = [Agent.objects.filter(name=f"bench-{i}").first() or agent_create(name=f"bench-{i}")[0] for i in range(5)]
    now = datetime.now(UTC)
    batch = []
    for n in range(items):
        batch.append(
            ProposedAction(
                id=uuid.uuid4(),
                agent=agents[n % 5],
                action_type=refund,
                status=Status.NEEDS_REVIEW,
                params={"order_id": f"A-{n}", "amount": n % 500, "reason": "damaged item"},
                trajectory=[
                    {"kind": "message", "tool": "", "args": {}, "result": None, "role": "user", "content": "hi"}
                ],
                request_fingerprint=f"{n:064d}",
                risk_score=(n % 100) / 100,
                escalated=n % 97 == 0,
                sla_deadline=now + timedelta(minutes=n % 600),
                expires_at=now + timedelta(days=1),
                findings=[{"rule": "amount", "outcome": "fail", "effect": "review", "message": "over limit"}],
            )
        )
        if len(batch) == 5000:
            ProposedAction.objects.bulk_create(batch)
            batch = []
    ProposedAction.objects.bulk_create(batch)


def vacuum() -> None:
    """The steady state autovacuum leaves: fresh statistics, a set visibility map (index-only counts)."""
    from django.db import connection

    connection.close()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("vacuum analyze approvals_proposedaction")


def timings(client: object, path: str, runs: int) -> list[float]:
    result = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)  # type: ignore[attr-defined]
        result.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "queue_page.md"))
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    fill(args.items)
    vacuum()
    user = User.objects.filter(username="bench-reviewer").first() or User.objects.create_superuser("bench-reviewer")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    cases = {
        "first page": "/review/",
        "page 1,000 (deep)": "/review/?page=1000",
        "filtered: agent + high risk": "/review/?agent=bench-3&risk=high",
        "empty tab (baseline)": "/review/?tab=audit",
    }
    rows = []
    for name, path in cases.items():
        timings(client, path, 3)  # warm-up
        queries: list[str] = []

        def count(execute: Any, sql: str, *rest: Any, seen: list[str] = queries) -> Any:
            seen.append(sql)
            return execute(sql, *rest)

        with connection.execute_wrapper(count):
            client.get(path)
        values = timings(client, path, args.runs)
        rows.append((name, path, statistics.median(values), statistics.quantiles(values, n=10)[-1], len(queries)))
    baseline = rows[-1][2]
    lines = [
        "# Queue page benchmark",
        "",
        f"`.venv/bin/python bench/queue_page.py` on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL; {args.items:,} waiting actions; "
        f"{args.runs} renders each, server side (Django test client, no network); "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "Baseline: the same page with nothing to list (its fixed cost), in the same run.",
        "",
        "| page | median ms | p90 ms | queries | ratio to baseline | goal |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, path, median, p90, queries in rows:
        goal = "< 150 ms " + ("✓" if median < 150 else "✗") if path == "/review/" else ""
        lines.append(f"| {name} (`{path}`) | {median:.1f} | {p90:.1f} | {queries} | {median / baseline:.2f} | {goal} |")
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
