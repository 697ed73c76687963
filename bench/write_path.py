"""Does the hand-written SQL on the worker's path (approvals/gate/statements.py and
approvals/lifecycle/statements.py) earn its keep against the ORM?

    .venv/bin/python bench/write_path.py [--actions 300] [--rounds 5] [--report bench/results/write_path.md]

The worker's path, in-process against PostgreSQL (its own database, gate_bench_write, the connection
pool as deployed, no broker: the evaluation is called directly): ``action_evaluate`` of pending
proposals (~1 KB, a 5-step trajectory), timed as CPU of this process per evaluation and as wall time,
in alternating rounds of two variants of the same code:

- as shipped: the attempt counted and the action loaded by one written-out statement (agent name,
  type version and the built-in repeat check in it), the decision, audit link and outbox row
  inserted by ``lifecycle.statements.insert``;
- the ORM: the same reads as querysets (``select_related``, the repeat checks as ``Subquery``s),
  the same rows saved with ``Model.save(force_insert=True)``.

The guarded ``UPDATE … RETURNING`` of a transition has no ORM form and runs in both. The README keeps
a written-out statement only where the ORM costs more than 10% on the path.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get(
    "GATE_WRITE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench_write"
)
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")

import django  # noqa: E402

from bench.stack import ensure_database  # noqa: E402
from bench.workload import REFUND_TYPE, small_body  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "write_path.md"))
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.db import models
    from django.db.models import F, OuterRef, Subquery

    from approvals.gate import selectors, services
    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.lifecycle import statements
    from approvals.models import ActionType, Agent, ProposedAction, Status

    call_command("migrate", verbosity=0)
    policies_import(document={"version": 1, "action_types": [REFUND_TYPE]}, actor="bench")
    agent = Agent.objects.filter(name="bench-write").first() or agent_create(name="bench-write")[0]
    refund = ActionType.objects.get(name="refund")

    def orm_load(action_id: str, *, now: datetime) -> selectors.ForEvaluation | None:
        pending = ProposedAction.objects.filter(pk=action_id, status=Status.PENDING)
        if not pending.update(evaluation_attempts=F("evaluation_attempts") + 1):
            return None
        repeats = (
            ProposedAction.objects.filter(
                agent_id=OuterRef("agent_id"),
                action_type_id=OuterRef("action_type_id"),
                params_hash=OuterRef("params_hash"),
                status__in=(Status.REJECTED, Status.BLOCKED),
                created_at__gte=now - selectors.REPEAT_WINDOW,
            )
            .exclude(pk=OuterRef("pk"))
            .order_by("-created_at")
        )
        # repeat_of_executed with equal params; the bench's proposals carry no session: the window
        executed = (
            ProposedAction.objects.filter(
                agent_id=OuterRef("agent_id"),
                action_type_id=OuterRef("action_type_id"),
                params_hash=OuterRef("params_hash"),
                status__in=(Status.APPROVED, Status.AUTO_APPROVED),
                created_at__gte=now - selectors.REPEAT_WINDOW,
            )
            .exclude(pk=OuterRef("pk"))
            .exclude(outcome_executed=False)
            .order_by("-created_at")
        )
        action = (
            ProposedAction.objects.filter(pk=action_id, status=Status.PENDING)
            .select_related("agent", "action_type")
            .defer("trajectory_raw")
            .annotate(
                refused_id=Subquery(repeats.values("id")[:1]),
                refused=Subquery(repeats.values("status")[:1]),
                executed_id=Subquery(executed.values("id")[:1]),
                executed=Subquery(executed.values("status")[:1]),
            )
            .first()
        )
        if action is None:
            return None
        refused = {"id": str(action.refused_id), "status": action.refused} if action.refused else None  # type: ignore[attr-defined]
        done = {"id": str(action.executed_id), "status": action.executed} if action.executed else None  # type: ignore[attr-defined]
        return selectors.ForEvaluation(action, action.agent.name, refused, done)

    def orm_insert(instance: models.Model) -> None:
        instance.save(force_insert=True)

    shipped = (selectors.action_for_evaluation, statements.insert)
    variants: dict[str, tuple[Any, Any]] = {"as shipped": shipped, "ORM": (orm_load, orm_insert)}

    def pending_actions(count: int) -> list[str]:
        ids = []
        for _ in range(count):
            body = small_body(amount=40, order_id=f"A-{uuid.uuid4().hex[:8]}")
            action = ProposedAction(
                agent=agent,
                action_type=refund,
                params=body["params"],
                params_hash=services.params_hash(body["params"]),
                trajectory=body["trajectory"],
                request_fingerprint=services.request_fingerprint(body),
            )
            action.save(force_insert=True)
            ids.append(str(action.id))
        return ids

    cpu: dict[str, list[float]] = {name: [] for name in variants}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    for action_id in pending_actions(20):  # warm-up: compiled policy, type cache, connection
        services.action_evaluate(action_id=action_id)
    for round_index in range(args.rounds):
        for name in list(variants) if round_index % 2 == 0 else list(reversed(variants)):
            ids = pending_actions(args.actions)
            selectors.action_for_evaluation, statements.insert = variants[name]  # type: ignore[assignment]
            try:
                cpu_started, wall_started = time.process_time(), time.perf_counter()
                for action_id in ids:
                    services.action_evaluate(action_id=action_id)
                cpu[name].append((time.process_time() - cpu_started) * 1000 / args.actions)
                wall[name].append((time.perf_counter() - wall_started) * 1000 / args.actions)
            finally:
                selectors.action_for_evaluation, statements.insert = shipped  # type: ignore[assignment]
            assert not ProposedAction.objects.filter(pk__in=ids, status=Status.PENDING).exists()

    base = statistics.median(cpu["as shipped"])
    orm = statistics.median(cpu["ORM"])
    lines = [
        "# The worker's path: written-out SQL against the ORM",
        "",
        f"`.venv/bin/python bench/write_path.py --actions {args.actions} --rounds {args.rounds}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Per evaluation of a pending ~1 KB proposal "
        "(auto-approved: a decision, an audit link and an outbox row written, the outbox dispatched), "
        "median of alternating rounds.",
        "",
        "| variant | CPU ms per evaluation | wall ms per evaluation | CPU, rounds | CPU ratio |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for name in variants:
        rounds = ", ".join(f"{v:.2f}" for v in cpu[name])
        median = statistics.median(cpu[name])
        lines.append(
            f"| {name} | {median:.2f} | {statistics.median(wall[name]):.2f} | {rounds} | {median / base:.2f} |"
        )
    verdict = "keep the written-out statements" if orm / base > 1.10 else "within 10%: the ORM would do"
    lines += ["", f"The ORM costs {100 * (orm / base - 1):+.0f}% of the CPU on this path: {verdict}."]
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
