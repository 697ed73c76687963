"""What a history aggregate (contract §6.1) costs an evaluation, against PostgreSQL.

    .venv/bin/python bench/history_cost.py [--actions 50000] [--matching 200] [--calls 300]

Its own database (gate_bench_history): ``--actions`` refunds of one type in the last day, spread over
customers, ``--matching`` of them for the customer the proposal names, and as many again of another
type. Measured in-process, median wall and CPU per call, beside a ``SELECT 1`` round trip in the same
run (the least any statement costs): ``history_values`` for one count, one sum, and both; and the
executed-repeat search (``repeat_of_executed``) of a type with identity params (with equal params it is
a subquery of the evaluation's one-statement load, on ``action_done_idx``).
Report: bench/results/history_cost.md.
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
os.environ["DATABASE_URL"] = os.environ.get(
    "GATE_HISTORY_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench_history"
)
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")

import django  # noqa: E402

from bench.stack import ensure_database  # noqa: E402

COUNT = {"name": "refunds_today", "window_minutes": 1440, "match": {"params.customer_id": "params.customer_id"}}
SUM = {**COUNT, "name": "refunded_today", "aggregate": "sum", "path": "params.amount"}


def timed(work: Any, calls: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds per call."""
    work()
    walls, cpus = [], []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=50_000)
    parser.add_argument("--matching", type=int, default=200)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "history_cost.md"))
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from approvals import policy
    from approvals.evidence.history import executed_repeat, history_values
    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.gate.services import params_hash
    from approvals.models import ActionType, Agent, ProposedAction, Status

    call_command("migrate", verbosity=0)
    document = {
        "version": 1,
        "action_types": [
            {"name": "refund", "params_schema": {"type": "object"}, "history": [COUNT, SUM]},
            {"name": "other", "params_schema": {"type": "object"}},
        ],
    }
    policies_import(document=document, actor="bench")
    agent = Agent.objects.filter(name="history-bench").first() or agent_create(name="history-bench")[0]
    refund, other = ActionType.objects.get(name="refund"), ActionType.objects.get(name="other")
    if ProposedAction.objects.filter(action_type=refund).count() < args.actions:
        now = timezone.now()
        rows = []
        for n in range(args.actions):
            customer = "C-1" if n < args.matching else f"C-{n % 5000 + 2}"
            params = {"customer_id": customer, "amount": n % 90 + 10, "order_id": f"A-{n}"}
            for action_type in (refund, other):
                rows.append(
                    ProposedAction(
                        agent=agent,
                        action_type=action_type,
                        params=params,
                        params_hash=params_hash(params),
                        context={"session_id": f"s-{n % 3000}"},
                        request_fingerprint=uuid.uuid4().hex,
                        status=Status.AUTO_APPROVED,
                        created_at=now - timedelta(seconds=n % 86_000),
                    )
                )
        ProposedAction.objects.bulk_create(rows, batch_size=2000)
        ProposedAction.objects.filter(action_type=refund).update(created_at=timezone.now() - timedelta(hours=1))
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE approvals_proposedaction")

    specs = {spec.name: spec for spec in policy.parse_document(document)}
    proposal = policy.Proposal(
        sample_key="k",
        action_type="refund",
        params={"customer_id": "C-1", "amount": 20, "order_id": "A-new"},
        confidence=None,
        context={"session_id": "s-1"},
        agent={"name": agent.name},
        trajectory=[],
        now=timezone.now(),
    )

    def one_of(*history: dict[str, Any]) -> Any:
        compiled = policy.compile_policy(
            policy.parse_action_type({"name": "refund", "params_schema": {"type": "object"}, "history": list(history)}),
            1,
        )
        return lambda: history_values(compiled, proposal, action_id=None, now=timezone.now())

    pending = ProposedAction.objects.filter(params__order_id="A-new").first() or ProposedAction.objects.create(
        agent=agent,
        action_type=refund,
        params=proposal.params,
        params_hash=params_hash(proposal.params),
        context=proposal.context,
        request_fingerprint=uuid.uuid4().hex,
    )

    def select_one() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    assert specs["refund"].history
    figures = {
        "`SELECT 1` (baseline)": timed(select_one, args.calls),
        "count, one match": timed(one_of(COUNT), args.calls),
        "sum, one match": timed(one_of(SUM), args.calls),
        "count and sum": timed(one_of(COUNT, SUM), args.calls),
        "executed-repeat search, identity_params (session)": timed(
            lambda: executed_repeat(pending, ("order_id",), now=timezone.now(), found_by_params=None), args.calls
        ),
    }
    value = one_of(COUNT, SUM)()[0]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL"
    lines = [
        "# What history aggregates cost an evaluation",
        "",
        f"`.venv/bin/python bench/history_cost.py --actions {args.actions} --matching {args.matching} "
        f"--calls {args.calls}` on {machine}; {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. "
        f"{args.actions:,} actions of the type in the window ({args.matching} for the proposal's customer: "
        f"{value}), as many of another type; median per call.",
        "",
        "| call | wall ms | CPU ms | wall / `SELECT 1` |",
        "| --- | ---: | ---: | ---: |",
    ]
    base = figures["`SELECT 1` (baseline)"][0]
    for name, (wall, cpu) in figures.items():
        lines.append(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / base:.1f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
