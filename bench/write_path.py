"""Would a hand-written INSERT of the lifecycle's rows earn its keep against the ORM's?

    .venv/bin/python bench/write_path.py [--actions 300] [--rounds 5] [--report bench/results/write_path.md]

A proposal and its evaluation, in-process against PostgreSQL (its own database, gate_bench_write, with
the connection pool as deployed), timed as CPU of this process per action, in alternating rounds of
two variants of the same code: the rows a proposal and a transition write (the action, its audit
links, the decision, the outbox row) inserted by the ORM, as shipped (``Model.save(force_insert=True)``),
or by the hand-written INSERT below (the SQL the ORM sends, values prepared by the models' own fields,
without the ORM's per-call compiling), which the gate used before. A hand-written statement is kept
only where the ORM costs more than 10% on the path (README, "Performance"). The guarded
``UPDATE … RETURNING`` of a transition has no ORM form and is not compared.
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
os.environ.pop("REDIS_URL", None)  # no broker: the evaluation is called here, not queued
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")

import django  # noqa: E402
import psycopg  # noqa: E402

from bench.workload import REFUND_TYPE, small_body  # noqa: E402


def ensure_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "write_path.md"))
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.db import connection, models

    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
    from approvals.models import ActionType, Agent

    call_command("migrate", verbosity=0)
    policies_import(document={"version": 1, "action_types": [REFUND_TYPE]}, actor="bench")
    agent = Agent.objects.filter(name="bench-write").first() or agent_create(name="bench-write")[0]
    refund = ActionType.objects.get(name="refund")
    orm_save = models.Model.save

    def hand_written_insert(instance: models.Model) -> None:
        opts = instance._meta
        key = opts.pk
        assert key is not None
        database_keyed = isinstance(key, models.AutoField)
        fields = [f for f in opts.concrete_fields if not (f is key and database_keyed)]
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        params = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {connection.ops.quote_name(opts.db_table)} ({columns}) "
                f"VALUES ({', '.join(['%s'] * len(params))}) RETURNING {connection.ops.quote_name(key.column)}",
                params,
            )
            if database_keyed:
                instance.pk = cursor.fetchone()[0]

    def save_by_hand(self: models.Model, *args: Any, force_insert: bool = False, **kwargs: Any) -> None:
        if force_insert:
            hand_written_insert(self)
        else:
            orm_save(self, *args, **kwargs)

    def one_action(n: int) -> None:
        body = small_body(amount=20 + n % 50, order_id=f"A-{uuid.uuid4().hex[:8]}")
        action, _ = action_propose(
            agent=agent, action_type=refund, params=body["params"], fingerprint=request_fingerprint(body),
            trajectory_raw=body["trajectory"],
        )  # fmt: skip
        action_evaluate(action_id=str(action.id))

    variants: dict[str, Any] = {"ORM save(force_insert=True)": orm_save, "hand-written INSERT": save_by_hand}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for n in range(20):  # warm-up: compiled policy, prepared connections
        one_action(n)
    for round_index in range(args.rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in order:
            models.Model.save = variants[name]  # type: ignore[method-assign]
            try:
                started = time.process_time()
                for n in range(args.actions):
                    one_action(n)
                cpu[name].append((time.process_time() - started) * 1000 / args.actions)
            finally:
                models.Model.save = orm_save  # type: ignore[method-assign]

    orm = statistics.median(cpu["ORM save(force_insert=True)"])
    base = statistics.median(cpu["hand-written INSERT"])
    lines = [
        "# Write path: hand-written INSERT against the ORM",
        "",
        f"`.venv/bin/python bench/write_path.py --actions {args.actions} --rounds {args.rounds}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. CPU of this process per action (a proposal and its "
        "evaluation: 6 rows inserted), median of alternating rounds.",
        "",
        "| variant | CPU ms per action (median) | rounds | ratio to hand-written |",
        "| --- | ---: | --- | ---: |",
    ]
    for name, values in cpu.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        lines.append(
            f"| {name} | {statistics.median(values):.2f} | {rounds} | {statistics.median(values) / base:.3f} |"
        )
    lines += [
        "",
        f"The ORM costs {100 * (orm / base - 1):+.1f}% of the hand-written INSERT's CPU on this path: "
        + (
            "a hand-written INSERT is worth keeping."
            if orm / base > 1.10
            else "within the 10% bar: the ORM writes them."
        ),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
