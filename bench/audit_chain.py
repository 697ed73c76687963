"""What the audit log's hash chain costs: `audit_record` calls/s with and without the chain.

    GATE_AUDIT_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/gate_audit_bench \\
        .venv/bin/python bench/audit_chain.py [--events 2000] [--rounds 5] [--verify-rows 100000]

Its own PostgreSQL database (created if missing); it TRUNCATEs the audit and action tables there at the
start and the end. Rounds, in shuffled order, of each variant with one transaction per write (as in the
services: the commit included) and with all of a round's writes in one transaction (the chain's own work):
  - plain: the insert audit_record did before the chain (same row, no lock, no lookup, no hash);
  - chained, one action per chain (a few events per action, the common case);
  - chained, the gate chain (one long chain every writer shares).
Then `verify_audit` over --verify-rows chained events: events/s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get(
    "GATE_AUDIT_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_audit_bench"
)
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


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE approvals_auditevent, approvals_proposedaction CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000, help="writes per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--actions", type=int, default=500, help="actions the per-action variant cycles over")
    parser.add_argument("--verify-rows", type=int, default=100_000)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "audit_chain.md"))
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from approvals.gate import services as gate_services
    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.gate.services import action_propose, request_fingerprint
    from approvals.lifecycle import audit_chain, transitions
    from approvals.lifecycle.audit import audit_record
    from approvals.models import ActionType, Agent, AuditEvent, ProposedAction, Status

    call_command("migrate", verbosity=0)
    truncate()
    if not ActionType.objects.filter(name="refund").exists():
        policies_import(
            document={"version": 1, "action_types": [{"name": "refund", "params_schema": {"type": "object"}}]},
            actor="bench",
        )
    refund = ActionType.objects.get(name="refund")
    agent = Agent.objects.filter(name="bench-audit").first() or agent_create(name="bench-audit")[0]
    actions = ProposedAction.objects.bulk_create(
        ProposedAction(
            agent=agent,
            action_type=refund,
            status=Status.NEEDS_REVIEW,
            params={"order_id": f"A-{n}"},
            request_fingerprint=f"{n:064d}",
        )
        for n in range(args.actions)
    )
    data = {"reason": "amount above the auto-approve limit", "findings": [{"rule": "r", "outcome": "review"}]}
    plain_seq = 0

    def plain(n: int) -> None:
        nonlocal plain_seq
        plain_seq += 1
        with transaction.atomic():
            AuditEvent.objects.create(
                action=actions[n % len(actions)],
                event="evaluated",
                actor="policy",
                from_status="pending",
                to_status="needs_review",
                data=data,
                created_at=timezone.now(),
                chain="bench-plain",
                seq=plain_seq,
                prev_hash="",
                hash="",
            )

    def per_action(n: int) -> None:
        with transaction.atomic():
            audit_record(
                action=actions[n % len(actions)],
                event="evaluated",
                actor="policy",
                from_status="pending",
                to_status="needs_review",
                data=data,
            )

    def gate(n: int) -> None:
        with transaction.atomic():
            audit_record(action=None, event="policy_changed", actor="bench", data=data)

    variants = {
        "plain insert (before the chain)": plain,
        "chained, per action": per_action,
        "chained, gate chain": gate,
    }
    # Each variant twice per round: one transaction per write (as the services do: commit included) and
    # all of a round's writes in one transaction (the chain's own work: advisory lock, lookup, hash).
    rates: dict[tuple[str, bool], list[float]] = {(name, batched): [] for name in variants for batched in (False, True)}
    order = list(rates)
    for _ in range(args.rounds):
        random.shuffle(order)  # no variant always runs first or last in a round
        for name, batched in order:
            write = variants[name]
            started = time.perf_counter()
            with transaction.atomic() if batched else contextlib.nullcontext():
                for n in range(args.events):
                    write(n)
            rates[(name, batched)].append(args.events / (time.perf_counter() - started))
    # End to end: action_propose (its evaluation runs eagerly on commit: 2 transactions, 2 audit
    # events, plus the rest of the gate's work) with the chained audit_record and with the plain insert.
    chained_record = audit_record

    def plain_record(*, action: Any, event: str, actor: str, from_status: str = "", to_status: str = "",
                     data: Any = None) -> Any:  # fmt: skip
        return AuditEvent.objects.create(
            action=action, event=event, actor=actor, from_status=from_status, to_status=to_status,
            data=data or {}, chain=f"plain-{uuid.uuid4()}", seq=1, prev_hash="", hash="",
        )  # fmt: skip

    def propose(n: int) -> None:
        params = {"order_id": f"P-{uuid.uuid4()}", "amount": n % 300}
        body = {"action_type": "refund", "params": params}
        action_propose(agent=agent, action_type=refund, params=params, fingerprint=request_fingerprint(body))

    propose_rates: dict[str, list[float]] = {"plain": [], "chained": []}
    proposals = max(1, args.events // 4)
    for _ in range(args.rounds):
        for name in random.sample(list(propose_rates), 2):
            # every writer the path goes through: the proposal's first link, the evaluation's transition
            for module in (gate_services, transitions):
                module.audit_record = plain_record if name == "plain" else chained_record  # type: ignore[attr-defined]
            try:
                started = time.perf_counter()
                for n in range(proposals):
                    propose(n)
                propose_rates[name].append(proposals / (time.perf_counter() - started))
            finally:
                for module in (gate_services, transitions):
                    module.audit_record = chained_record  # type: ignore[attr-defined]

    per_action_events = AuditEvent.objects.filter(action__isnull=False).exclude(chain="bench-plain").count()

    # verify_audit speed over --verify-rows chained events: 5 per action, the rows built here with the
    # writer's hash function and bulk-inserted (the plain rows above are not chained: dropped first).
    truncate()
    now = timezone.now()
    started = time.perf_counter()
    written = 0
    while written < args.verify_rows:
        batch_actions = ProposedAction.objects.bulk_create(
            ProposedAction(
                agent=agent,
                action_type=refund,
                params={},
                request_fingerprint=uuid.uuid4().hex * 2,
            )
            for _ in range(1000)
        )
        rows = []
        for action in batch_actions:
            prev = audit_chain.GENESIS
            for seq in range(1, 6):
                row = AuditEvent(
                    action=action,
                    event="evaluated",
                    actor="policy",
                    from_status="pending",
                    to_status="needs_review",
                    data=data,
                    created_at=now,
                    chain=str(action.pk),
                    seq=seq,
                    prev_hash=prev,
                )
                row.hash = prev = audit_chain.event_hash(row, prev)
                rows.append(row)
        AuditEvent.objects.bulk_create(rows, batch_size=5000)
        written += len(rows)
    fill_seconds = time.perf_counter() - started
    out = io.StringIO()
    started = time.perf_counter()
    call_command("verify_audit", stdout=out)
    verify_seconds = time.perf_counter() - started
    truncate()

    lines = [
        "# Audit chain cost",
        "",
        f"`.venv/bin/python bench/audit_chain.py --events {args.events} --rounds {args.rounds} "
        f"--verify-rows {args.verify_rows}` on {platform.machine()}, {os.cpu_count()} cores (shared), "
        f"Python {platform.python_version()}, PostgreSQL on loopback; {args.rounds} rounds in shuffled order, "
        "median writes/s.",
        "",
        "| audit_record variant | one transaction per write | min - max | vs plain "
        "| all in one transaction | min - max | vs plain |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in variants:
        cells = []
        for batched in (False, True):
            values = rates[(name, batched)]
            median = statistics.median(values)
            base = statistics.median(rates[("plain insert (before the chain)", batched)])
            cells += [f"{median:,.0f}", f"{min(values):,.0f} - {max(values):,.0f}", f"{median / base:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    plain_p, chained_p = (statistics.median(propose_rates[k]) for k in ("plain", "chained"))
    lines += [
        "",
        f"End to end, `action_propose` with its eager evaluation ({proposals} per round, 2 audit events "
        f"each): {chained_p:,.1f}/s chained vs {plain_p:,.1f}/s with the plain insert = "
        f"{chained_p / plain_p:.2f} (ranges {min(propose_rates['chained']):,.1f} - "
        f"{max(propose_rates['chained']):,.1f} and {min(propose_rates['plain']):,.1f} - "
        f"{max(propose_rates['plain']):,.1f}).",
        "",
        f"Per-action chains: {args.actions} actions, {per_action_events:,} events in them by the end.",
        f"verify_audit: {written:,} events in {written // 5:,} chains (bulk-loaded in {fill_seconds:.0f} s) "
        f"verified in {verify_seconds:.2f} s = {written / verify_seconds:,.0f} events/s; "
        f"it said: {out.getvalue().strip()}",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
