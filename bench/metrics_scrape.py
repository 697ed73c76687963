"""What a /metrics scrape and an /ops/data refresh cost on 1,000,000 actions.

    .venv/bin/python bench/metrics_scrape.py [--rows 1000000] [--runs 15] [--reload] [--report FILE]

(the report goes to bench/results/metrics_scrape.md by default).

Uses its own PostgreSQL database (GATE_BENCH_METRICS_DATABASE_URL, default gate_bench_metrics on
127.0.0.1), filled once with INSERT ... SELECT generate_series (kept between runs; `--reload`
refills it): actions over 30 days, 6 types, 20 agents, 5% waiting for review (some escalated), 0.5%
pending, the rest decided, expired or cancelled; 100,000 webhook deliveries, 1% failed. Redis:
GATE_BENCH_METRICS_REDIS_URL (default redis://127.0.0.1:6379/13).

Times, cache off (GATE_METRICS_CACHE_SECONDS=0), median of --runs after one warm-up:
each query of approvals.ops.selectors.db_figures (EXPLAIN ANALYZE: plan and time), db_figures as a whole,
the whole /metrics text (database + Redis + rendering), ops_figures; beside the naive baseline
``SELECT count(*) FROM approvals_proposedaction``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get(
    "GATE_BENCH_METRICS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench_metrics"
)
os.environ["REDIS_URL"] = os.environ.get("GATE_BENCH_METRICS_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")
os.environ["GATE_METRICS_CACHE_SECONDS"] = "0"

import django  # noqa: E402
import psycopg  # noqa: E402

GENERATOR = "metrics_scrape generator v1"
CHUNK = 200_000
TYPES = ["refund", "cancel_order", "escalate_ticket", "update_address", "issue_credit", "delete_account"]

INSERT_ACTIONS = """
INSERT INTO approvals_proposedaction (
    id, agent_id, action_type_id, params, trajectory_raw, trajectory, context, confidence, rationale,
    idempotency_key, request_fingerprint, callback_url, status, risk_score, findings, policy_version,
    audit_flagged, escalated, sla_deadline, expires_at, evaluation_attempts, params_hash, amount,
    reached_thresholds, ground_truth, remembered_approval_id, outcome_executed, outcome_result,
    outcome_error, outcome_at, claimed_by_id, claimed_until, created_at, evaluated_at, decided_at
)
SELECT
    gen_random_uuid(), (%(agents)s::bigint[])[1 + n %% 20], (%(types)s::bigint[])[1 + (n / 7) %% 6],
    jsonb_build_object('order_id', 'A-' || n, 'amount', n %% 500), NULL, '[]'::jsonb, '{}'::jsonb, 0.9, '',
    NULL, md5(n::text), '', s.status, 0.2, '[]'::jsonb, 1,
    false, s.status = 'needs_review' AND n %% 10 = 0, NULL, NULL, 1, md5('p' || n), n %% 500,
    true, NULL, NULL, NULL, NULL, '', NULL, NULL, NULL,
    s.created_at,
    CASE WHEN s.status = 'pending' THEN NULL ELSE s.created_at + interval '50 milliseconds' END,
    CASE WHEN s.status IN ('auto_approved', 'blocked') THEN s.created_at + interval '50 milliseconds'
         WHEN s.status IN ('approved', 'rejected') THEN s.created_at + interval '20 minutes' END
FROM (
    SELECT n,
        CASE WHEN p < 0.70 THEN 'auto_approved' WHEN p < 0.78 THEN 'blocked' WHEN p < 0.86 THEN 'approved'
             WHEN p < 0.90 THEN 'rejected' WHEN p < 0.92 THEN 'expired' WHEN p < 0.935 THEN 'cancelled'
             WHEN p < 0.985 THEN 'needs_review' WHEN p < 0.99 THEN 'pending' ELSE 'auto_approved' END AS status,
        now() - t * interval '30 days' AS created_at
    FROM (SELECT n, random() AS p, random() AS t FROM generate_series(%(start)s, %(stop)s) AS n) r
) s
"""

INSERT_WEBHOOKS = """
INSERT INTO approvals_webhookdelivery (action_id, event, url, body, state, attempts, last_status_code,
                                       last_error, created_at, delivered_at)
SELECT a.id, 'action.evaluated', 'https://hooks.example/gate', '{}',
       CASE WHEN random() < 0.01 THEN 'failed' WHEN random() < 0.005 THEN 'pending' ELSE 'delivered' END,
       1, 200, '', a.created_at, a.created_at
FROM (SELECT id, created_at FROM approvals_proposedaction LIMIT %(n)s) a
"""


def ensure_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def fill(rows: int, reload: bool) -> float | None:
    from django.core.management import call_command
    from django.db import connection

    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.models import ActionType, Agent, ProposedAction

    call_command("migrate", verbosity=0)
    marker = f"{GENERATOR}; rows={rows}"
    first = ActionType.objects.filter(name=TYPES[0]).first()
    if not reload and first is not None and first.description == marker and ProposedAction.objects.count() == rows:
        return None
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE approvals_proposedaction CASCADE")
    policies_import(
        document={
            "version": 1,
            "action_types": [{"name": name, "params_schema": {"type": "object"}} for name in TYPES],
        },
        actor="bench",
    )
    types = list(ActionType.objects.filter(name__in=TYPES).values_list("pk", flat=True))
    agents = [
        (Agent.objects.filter(name=f"bench-{i}").first() or agent_create(name=f"bench-{i}")[0]).pk for i in range(20)
    ]
    with connection.cursor() as cursor:
        for start in range(1, rows + 1, CHUNK):
            cursor.execute(
                INSERT_ACTIONS,
                {"agents": agents, "types": types, "start": start, "stop": min(rows, start + CHUNK - 1)},
            )
        cursor.execute(INSERT_WEBHOOKS, {"n": rows // 10})
    ActionType.objects.filter(name=TYPES[0]).update(description=marker)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE approvals_proposedaction")
        cursor.execute("VACUUM ANALYZE approvals_webhookdelivery")
    return time.perf_counter() - started


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def explain(sql: str) -> tuple[str, str, float]:
    """The statement (shortened), its scans, and the execution time PostgreSQL reports, in ms."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        lines = [row[0] for row in cursor.fetchall()]
    ms = float(next(line for line in lines if line.startswith("Execution Time")).split()[2])
    scans = sorted({line.strip().removeprefix("-> ").split("  ")[0] for line in lines if "Scan" in line})
    short = " ".join(sql.split())
    short = short if len(short) < 140 else short[:137] + "..."
    return short.replace("|", "\\|"), "; ".join(scans), ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "metrics_scrape.md"))
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from approvals.models import Status, WebhookDelivery
    from approvals.ops import metrics, pages, selectors

    load = fill(args.rows, args.reload)

    def baseline() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM approvals_proposedaction")
            cursor.fetchone()

    # The exact statements /metrics and /ops/data run, captured, then explained one by one.
    with CaptureQueriesContext(connection) as captured:
        selectors.db_figures()
        pages.ops_figures()
    statements = list(dict.fromkeys(q["sql"] for q in captured.captured_queries))  # /ops/data repeats some
    results = {
        "baseline: SELECT count(*) FROM approvals_proposedaction": timed(baseline, args.runs),
        "db_figures (every /metrics query)": timed(selectors.db_figures, args.runs),
        "/metrics text (database + Redis + rendering)": timed(metrics.metrics_text, args.runs),
        "/ops/data figures": timed(pages.ops_figures, args.runs),
    }
    plans = [explain(sql) for sql in statements]
    base = results["baseline: SELECT count(*) FROM approvals_proposedaction"][0]
    figures = selectors.db_figures()

    lines = [
        "# /metrics and /ops/data on 1,000,000 actions",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `.venv/bin/python bench/metrics_scrape.py"
        f" --rows {args.rows} --runs {args.runs}`.",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {connection.cursor().connection.info.server_version}; "
        f"load average {os.getloadavg()[0]:.1f} at the end (other work on the machine inflates every row alike).",
        f"Data: {args.rows:,} actions ({figures.status_total(Status.NEEDS_REVIEW):,} waiting for review, "
        f"{figures.status_total(Status.PENDING):,} pending), {WebhookDelivery.objects.count():,} webhook deliveries"
        + (f"; loaded in {load:.0f} s." if load else "; loaded earlier."),
        "",
        "| what | median ms | p90 ms | ratio to baseline |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {med:.1f} | {p90:.1f} | {med / base:.3f} |" for name, (med, p90) in results.items()),
        "",
        "Each statement (EXPLAIN ANALYZE, one run after the timings):",
        "",
        "| statement | scans | ms |",
        "| --- | --- | ---: |",
        *(f"| `{sql}` | {plan} | {ms:.1f} |" for sql, plan, ms in plans),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
