"""Threshold sweep over 1,000,000 labelled actions of one type.

    .venv/bin/python bench/eval_sweep.py [--rows 1000000] [--runs 5] [--reload] [--report bench/results/eval_sweep.md]

Uses its own PostgreSQL database (GATE_BENCH_SWEEP_DATABASE_URL, default gate_bench_sweep on 127.0.0.1),
created and migrated here, and filled once with INSERT ... SELECT generate_series: the rows stay between
runs while they match this script's generator (`--reload` drops and refills them). Then VACUUM ANALYZE
(the steady state autovacuum leaves) and, in the same run:

- baseline: ``SELECT count(*) FROM approvals_proposedaction WHERE action_type_id = X AND
  ground_truth IS NOT NULL`` (the cheapest read of the same labelled rows);
- the sweep: ``approvals.evaluation.sweep.threshold_sweep(type)``.

One warm-up of each, then the median of ``--runs``. Goal (issue): the sweep over 1,000,000 labelled
actions of one type returns in under 3 seconds.
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
    "GATE_BENCH_SWEEP_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench_sweep"
)
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")

import django  # noqa: E402
import psycopg  # noqa: E402

TYPE_NAME = "bench_refund"
GOAL_SECONDS = 3.0
# Bump when the generator changes: stored rows from another version are refilled.
GENERATOR = "eval_sweep generator v1"
CHUNK = 100_000

POLICY: dict[str, Any] = {
    "version": 1,
    "action_types": [
        {
            "name": TYPE_NAME,
            "description": "",  # set to the generator marker after a load
            "params_schema": {
                "type": "object",
                "required": ["order_id", "amount"],
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
            },
            "base_risk": 0.0,
            "auto_approve_max_risk": 0.3,
            "block_min_risk": 0.9,
            "min_confidence": 0.7,
            "amount_path": "amount",
            "max_auto_amount": 250,
            "rules": [
                {
                    "name": "order_looked_up",
                    "require": "trajectory.exists(s, s.tool == 'get_order')",
                    "on_fail": "review",
                },
                {"name": "customer_asked", "require": "size(trajectory) > 1", "on_fail": "risk", "risk": 0.1},
                {"name": "new_customer", "require": "params.amount < 500", "on_fail": "risk", "risk": 0.3},
                {"name": "repeat_refund", "require": "!has(params.previous)", "on_fail": "risk", "risk": 0.4},
            ],
        }
    ],
}

# One row a value of n = generate_series. Random draws first (r.*), then columns derived from them.
# risk_score: sums of rule risks (0, 0.1, 0.3, 0.1+0.3, 0.6, 0.8) with weights 45/20/15/10/6/4%;
# amount: lognormal (median ~$80); confidence: mostly high; 70% reached the thresholds;
# ground truth: unsafe ~5% overall, more likely the higher the risk and the larger the amount.
INSERT_SQL = """
INSERT INTO approvals_proposedaction (
    id, agent_id, action_type_id, params, trajectory_raw, trajectory, context, confidence, rationale,
    idempotency_key, request_fingerprint, callback_url, status, risk_score, findings, policy_version,
    audit_flagged, escalated, sla_deadline, expires_at, evaluation_attempts, params_hash, amount,
    reached_thresholds, ground_truth, remembered_approval_id, outcome_executed, outcome_result,
    outcome_error, outcome_at, claimed_by_id, claimed_until, created_at, evaluated_at, decided_at
)
SELECT
    gen_random_uuid(), %(agent)s, %(type)s,
    jsonb_build_object(
        'order_id', 'A-' || n, 'amount', d.amount, 'currency', 'USD', 'customer_id', 'C-' || (n %% 50000),
        'reason', (ARRAY['damaged item', 'late delivery', 'wrong size', 'not as described'])[1 + n %% 4],
        'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (n %% 997), 'qty', 1 + n %% 3))
    ),
    NULL,
    jsonb_build_array(
        jsonb_build_object('kind', 'message', 'tool', '', 'args', '{}'::jsonb, 'result', NULL, 'role', 'user',
                           'content', 'Order A-' || n || ' arrived damaged, I would like my money back please.'),
        jsonb_build_object('kind', 'tool_call', 'tool', 'get_order', 'args', jsonb_build_object('order_id', 'A-' || n),
                           'result', jsonb_build_object('total', d.amount, 'status', 'delivered'), 'role', '',
                           'content', ''),
        jsonb_build_object('kind', 'message', 'tool', '', 'args', '{}'::jsonb, 'result', NULL, 'role', 'assistant',
                           'content', 'I can refund the order. Shall I go ahead?')
    ),
    jsonb_build_object('session_id', 'S-' || (n / 3)),
    d.confidence, '', NULL, md5(n::text) || md5((n + 1)::text), '',
    CASE
        WHEN d.status_kind = 'auto' THEN 'auto_approved'
        WHEN d.status_kind = 'blocked' THEN 'blocked'
        WHEN d.ground_truth = 'safe' THEN 'approved'
        ELSE 'rejected'
    END,
    d.risk,
    jsonb_build_array(
        jsonb_build_object('rule', 'order_looked_up', 'outcome', 'pass', 'effect', 'review', 'message', ''),
        jsonb_build_object('rule', 'customer_asked', 'outcome', 'pass', 'effect', 'risk', 'risk', 0.1),
        jsonb_build_object('rule', 'new_customer', 'outcome', CASE WHEN d.risk >= 0.3 THEN 'fail' ELSE 'pass' END,
                           'effect', 'risk', 'risk', 0.3, 'message', 'Refund above $500')
    ),
    %(version)s,
    d.status_kind = 'auto' AND n %% 20 = 0, false, NULL, NULL, 1, md5('p' || n) || md5('q' || n), d.amount,
    d.reached, d.ground_truth, NULL, NULL, NULL, '', NULL, NULL, NULL,
    d.created_at, d.created_at + interval '2 seconds',
    d.created_at + CASE WHEN d.status_kind = 'held' THEN interval '40 minutes' ELSE interval '2 seconds' END
FROM (
    SELECT r.*,
        CASE
            WHEN NOT r.reached THEN CASE WHEN r.n %% 10 = 0 THEN 'blocked' ELSE 'held' END
            WHEN r.risk <= 0.3 AND r.amount <= 250 AND r.confidence >= 0.7 THEN 'auto'
            ELSE 'held'
        END AS status_kind
    FROM (
        SELECT n, u.reached, u.risk, u.amount, u.confidence, u.created_at,
            CASE WHEN u.g < (CASE u.risk WHEN 0.0 THEN 0.01 WHEN 0.1 THEN 0.02 WHEN 0.3 THEN 0.06
                                         WHEN 0.4 THEN 0.10 WHEN 0.6 THEN 0.18 ELSE 0.30 END)
                            * (CASE WHEN u.amount > 500 THEN 1.5 ELSE 1.0 END)
                 THEN 'unsafe' ELSE 'safe' END AS ground_truth
        FROM (
            SELECT n, v.reached,
                (CASE WHEN v.p < 0.45 THEN 0.0 WHEN v.p < 0.65 THEN 0.1 WHEN v.p < 0.80 THEN 0.3
                      WHEN v.p < 0.90 THEN 0.4 WHEN v.p < 0.96 THEN 0.6 ELSE 0.8 END)::float8 AS risk,
                round(exp(ln(80) + sqrt(-2 * ln(1 - v.u1)) * cos(2 * pi() * v.u2))::numeric, 2)::float8 AS amount,
                least(1.0, greatest(0.0, 0.85 + 0.1 * sqrt(-2 * ln(1 - v.c1)) * cos(2 * pi() * v.c2))) AS confidence,
                v.g,
                now() - v.t * interval '180 days' AS created_at
            FROM (
                SELECT n, random() < 0.7 AS reached, random() AS p, random() AS u1, random() AS u2,
                    random() AS c1, random() AS c2, random() AS g, random() AS t
                FROM generate_series(%(start)s, %(stop)s) AS n
            ) v
        ) u
    ) r
) d
"""


def ensure_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def marker(rows: int) -> str:
    return f"{GENERATOR}; rows={rows}"


def fill(rows: int, reload: bool) -> tuple[Any, float | None]:
    """The action type with ``rows`` labelled actions; returns it and the load time (None: kept)."""
    from django.core.management import call_command
    from django.db import connection

    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.models import ActionType, Agent, ProposedAction

    call_command("migrate", verbosity=0)
    action_type = ActionType.objects.filter(name=TYPE_NAME).first()
    if action_type is not None and not reload and action_type.description == marker(rows):
        stored = ProposedAction.objects.filter(action_type=action_type, ground_truth__isnull=False).count()
        if stored == rows:
            return action_type, None
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Its own database: clear every action (and what hangs off them) at once.
        cursor.execute("TRUNCATE approvals_proposedaction CASCADE")
    policies_import(document=POLICY, actor="bench")
    action_type = ActionType.objects.get(name=TYPE_NAME)
    agent = Agent.objects.filter(name="bench-agent").first() or agent_create(name="bench-agent")[0]
    with connection.cursor() as cursor:
        for start in range(1, rows + 1, CHUNK):
            stop = min(rows, start + CHUNK - 1)
            cursor.execute(
                INSERT_SQL,
                {
                    "agent": agent.pk,
                    "type": action_type.pk,
                    "version": action_type.policy_version,
                    "start": start,
                    "stop": stop,
                },
            )
            print(f"  loaded {stop:,} / {rows:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
    ActionType.objects.filter(pk=action_type.pk).update(description=marker(rows))
    action_type.refresh_from_db()
    return action_type, time.perf_counter() - started


def vacuum() -> None:
    from django.db import connection

    connection.close()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("vacuum analyze approvals_proposedaction")


def timed(function: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    function()  # warm-up
    values, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        values.append(time.perf_counter() - started)
    return values, result


def settings_row() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("select split_part(version(), ' ', 2)")
        values = {"PostgreSQL": cursor.fetchone()[0]}
        for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit"):
            cursor.execute(f"show {name}")
            values[name] = cursor.fetchone()[0]
        cursor.execute("select pg_size_pretty(pg_total_relation_size('approvals_proposedaction'))")
        values["table + indexes"] = cursor.fetchone()[0]
        cursor.execute("select pg_column_size(t.*) from approvals_proposedaction t limit 1000")
        sizes = [row[0] for row in cursor.fetchall()]
        values["row size (bytes, mean of 1,000)"] = f"{statistics.mean(sizes):.0f}" if sizes else "-"
    return values


def query_breakdown(function: Callable[[], Any]) -> tuple[float, list[tuple[float, str]]]:
    """One more sweep with every query timed: where its time goes."""
    from django.db import connection

    seen: list[tuple[float, str]] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            seen.append((time.perf_counter() - started, sql))

    started = time.perf_counter()
    with connection.execute_wrapper(wrapper):
        function()
    return time.perf_counter() - started, seen


def describe(sql: str) -> str:
    text = " ".join(sql.split())
    if "percentile_disc" in text:
        return "amount candidates (percentile_disc over the eligible rows)"
    if "GROUP BY" in text:
        return "grouped counts (eligibility, risk, amount bucket, ground truth)"
    if "approvals_actiontype" in text:
        return "the action type"
    return text[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reload", action="store_true", help="drop the stored rows and load them again")
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "eval_sweep.md"))
    parser.add_argument("--wait", type=int, default=0, help="seconds to wait for threshold_sweep to exist")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.db import connection

    action_type, load_seconds = fill(args.rows, args.reload)
    vacuum()
    deadline = time.monotonic() + args.wait
    while True:
        try:
            from approvals.evaluation.sweep import threshold_sweep  # written beside this benchmark: lazily
        except ImportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(10)
            continue
        break

    def baseline() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM approvals_proposedaction WHERE action_type_id = %s AND ground_truth IS NOT NULL",
                [action_type.pk],
            )
            return int(cursor.fetchone()[0])

    def sweep() -> dict[str, Any]:
        return threshold_sweep(TYPE_NAME)

    base_values, counted = timed(baseline, args.runs)
    sweep_values, result = timed(sweep, args.runs)
    breakdown_total, breakdown = query_breakdown(sweep)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE ground_truth = 'unsafe'), count(*) FILTER (WHERE reached_thresholds),"
            " count(*) FILTER (WHERE status = 'auto_approved') FROM approvals_proposedaction"
            " WHERE action_type_id = %s",
            [action_type.pk],
        )
        unsafe, reached, auto = cursor.fetchone()
    config = settings_row()
    base_median, sweep_median = statistics.median(base_values), statistics.median(sweep_values)
    met = sweep_median < GOAL_SECONDS
    rec = result["recommendation"]
    lines = [
        "# Threshold sweep benchmark",
        "",
        f"`.venv/bin/python bench/eval_sweep.py` (`make bench-sweep`) on {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other work, Python {platform.python_version()}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        f"Data: {counted:,} labelled actions of one type (`{TYPE_NAME}`) in the benchmark's own database, "
        "loaded with `INSERT … SELECT generate_series` "
        + (f"in {load_seconds:.0f} s" if load_seconds is not None else "in an earlier run (kept; `--reload` refills)")
        + f", then `VACUUM ANALYZE`. Unsafe: {unsafe:,} ({unsafe / counted:.1%}); reached the thresholds: "
        f"{reached:,} ({reached / counted:.1%}); auto-approved when stored: {auto:,}. risk_score from rule-risk "
        "sums (0 / 0.1 / 0.3 / 0.4 / 0.6 / 0.8), amount lognormal (median $80), confidence ~N(0.85, 0.1), "
        "unsafe more likely at higher risk and above $500; params, trajectory (3 steps) and findings as JSON. "
        "No Label rows: the sweep reads the `ground_truth` column.",
        "",
        "| setting | value |",
        "| --- | --- |",
        *[f"| {name} | {value} |" for name, value in config.items()],
        "",
        f"One warm-up, then {args.runs} runs each, in the same process and run.",
        "",
        "| what | median s | min s | max s | ratio to baseline |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| baseline: `count(*)` of the type's labelled rows | {base_median:.3f} | {min(base_values):.3f} | "
        f"{max(base_values):.3f} | 1.00 |",
        f"| `threshold_sweep('{TYPE_NAME}')` | {sweep_median:.3f} | {min(sweep_values):.3f} | "
        f"{max(sweep_values):.3f} | {sweep_median / base_median:.1f} |",
        "",
        f"Goal: the sweep over {counted:,} labelled actions of one type in under {GOAL_SECONDS:.0f} s: "
        + (f"**met** (median {sweep_median:.2f} s)." if met else f"**NOT met** (median {sweep_median:.2f} s)."),
        "",
        "Where one sweep's time goes (one more run, every query timed):",
        "",
        "| query | s |",
        "| --- | ---: |",
        *[f"| {describe(sql)} | {seconds:.3f} |" for seconds, sql in breakdown],
        f"| (Python: grid, cumulative sums, recommendation; the rest) | "
        f"{max(0.0, breakdown_total - sum(s for s, _ in breakdown)):.3f} |",
        f"| total of this run | {breakdown_total:.3f} |",
        "",
        f"The sweep returned {len(result['points'])} points; recommendation: "
        + (
            f"auto_approve_max_risk {rec['auto_approve_max_risk']}, max_auto_amount {rec['max_auto_amount']}, "
            f"{rec['auto_approved']:,} auto-approved, safe automation rate {rec['safe_automation_rate']}."
            if rec
            else "none (no candidate auto-approves without an unsafe action)."
        ),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
