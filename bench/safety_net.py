"""What the safety net of a policy change (contract §6.2) costs, against PostgreSQL.

    .venv/bin/python bench/safety_net.py [--actions 500] [--repeat 5]

Its own database (gate_bench_safety_net, GATE_SAFETY_NET_BENCH_DATABASE_URL), made afresh. Two
labelled histories of ``--actions`` actions each, and a change replayed over them with
``safety_net_replay`` (what import, an admin save and a threshold apply run before going live):

- demo: refunds under policies/demo.yaml with the demo's trajectory (one in ten labelled unsafe);
  the change raises max_auto_amount from 100 to 300, so that every action is newly auto-approved and
  both policies are evaluated for each (the worst case);
- airline: the converted airline proposals (examples/tau_bench_airline/proposals.jsonl), cycled,
  each stored with what the airline policy's lookups answered from the airline's service of record
  (service.py, in-process), its decision under that policy and its label (correct and
  escalation_expected: safe; unsafe and rejected_by_env: unsafe; the other escalations unlabelled);
  the change sets every type's auto_approve_max_risk to 0.6, which drops the policy's two risk
  controls (cancel_reservation, update_reservation_flights) and changes every type (a type a change
  leaves as it is is not replayed).

Median wall and CPU milliseconds of ``--repeat`` replays, and the queries each makes. Report:
bench/results/safety_net.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AIRLINE = ROOT / "examples" / "tau_bench_airline"
sys.path[:0] = [str(ROOT), str(AIRLINE)]
os.environ["DATABASE_URL"] = os.environ.get(
    "GATE_SAFETY_NET_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench_safety_net"
)
os.environ.pop("REDIS_URL", None)
os.environ["GATE_LOOKUP_ALLOWED_HOSTS"] = "127.0.0.1"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")

import django  # noqa: E402
import yaml  # noqa: E402

from bench.stack import ensure_database  # noqa: E402

LABELS = {"correct": "safe", "escalation_expected": "safe", "unsafe": "unsafe", "rejected_by_env": "unsafe"}


def stored(agent: Any, action_type: Any, proposal: Any, decision: Any, label: str | None, raw: Any) -> Any:
    from django.utils import timezone

    from approvals.gate.services import params_hash
    from approvals.models import ProposedAction

    lookups = {
        name: {"body": value} if value is not None else {"error": "failed"} for name, value in proposal.lookups.items()
    }
    return ProposedAction(
        agent=agent,
        action_type=action_type,
        params=proposal.params,
        params_hash=params_hash(proposal.params),
        trajectory_raw=raw,
        trajectory=proposal.trajectory,
        context=proposal.context,
        request_fingerprint=uuid.uuid4().hex,
        status=decision.status,
        findings=decision.findings,
        risk_score=decision.risk_score,
        evidence={"lookups": lookups} if lookups else {},
        ground_truth=label,
        evaluated_at=timezone.now(),
    )


def demo_history(agent: Any, actions: int) -> Any:
    from django.utils import timezone

    from approvals import policy
    from approvals.gate.selectors import compiled_policy_for
    from approvals.management.commands.seed_demo import CUSTOMER, ORDER_LOOKUP
    from approvals.models import ActionType, ProposedAction

    refund = ActionType.objects.get(name="refund")
    live = compiled_policy_for(refund)
    raw = [CUSTOMER, ORDER_LOOKUP]
    rows = []
    for n in range(actions):
        params = {"order_id": "A-1001", "amount": 101 + n % 19}
        proposal = policy.Proposal(
            sample_key=str(n),
            action_type="refund",
            params=params,
            confidence=0.9,
            context={},
            agent={"name": agent.name},
            trajectory=policy.normalize_trajectory(raw),
            now=timezone.now(),
        )
        label = "unsafe" if n % 10 == 0 else "safe"
        rows.append(stored(agent, refund, proposal, policy.policy_evaluate(live, proposal), label, raw))
    ProposedAction.objects.bulk_create(rows)
    document = policy.build_document([policy.parse_action_type({**live.spec.to_document(), "max_auto_amount": 300})])
    return document


def airline_history(agent: Any, actions: int, base_url: str) -> Any:
    from django.utils import timezone

    from approvals import policy
    from approvals.evidence.services import evidence_gather_unstored
    from approvals.gate.selectors import compiled_policy_for
    from approvals.models import ActionType, ProposedAction
    from approvals.policy.replay import proposal_from_line

    types = {t.name: t for t in ActionType.objects.all()}
    lines = [json.loads(line) for line in (AIRLINE / "proposals.jsonl").read_text().splitlines()]
    gathered = []
    for number, line in enumerate(lines):
        live = compiled_policy_for(types[line["action_type"]])
        proposal = evidence_gather_unstored(
            live, proposal_from_line(line, number=number, now=timezone.now()), now=timezone.now()
        )
        gathered.append((line, proposal, policy.policy_evaluate(live, proposal)))
    rows = [
        stored(agent, types[line["action_type"]], proposal, decision, LABELS.get(line["label"]), line["trajectory"])
        for n in range(actions)
        for line, proposal, decision in [gathered[n % len(gathered)]]
    ]
    ProposedAction.objects.bulk_create(rows)
    document = yaml.safe_load((AIRLINE / "policy.yaml").read_text())
    for action_type in document["action_types"]:
        # every type changes (a type left as it is is not replayed): two risk controls dropped
        action_type["auto_approve_max_risk"] = 0.6
        for lookup in action_type.get("lookups") or []:
            lookup["url"] = lookup["url"].replace("http://127.0.0.1:8100", base_url)
    return document


def measure(document: Any, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from approvals import policy
    from approvals.evaluation.safety_net import TypeChange, safety_net_replay
    from approvals.gate.selectors import compiled_policy_for
    from approvals.models import ActionType

    specs = policy.parse_document(document)
    live = {t.name: compiled_policy_for(t) for t in ActionType.objects.all()}
    changes = [TypeChange(spec.name, policy.compile_policy(spec, 0), live[spec.name]) for spec in specs]
    walls, cpus = [], []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started, cpu = time.perf_counter(), time.process_time()
            report = safety_net_replay(changes)
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
    return {
        "types": len(changes),
        "queries": len(queries.captured_queries),
        "replayed": report.replayed,
        "unsafe": len(report.unsafe),
        "safe": report.safe_newly_auto_approved,
        "median_ms": statistics.median(walls) * 1000,
        "min_ms": min(walls) * 1000,
        "cpu_ms": statistics.median(cpus) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "safety_net.md"))
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"], recreate=True)
    django.setup()
    from django.core.management import call_command
    from service import running_service

    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.management.commands.import_policies import load_policy_file

    call_command("migrate", verbosity=0)
    rows = []
    policies_import(document=load_policy_file(str(ROOT / "policies" / "demo.yaml")), actor="bench")
    agent = agent_create(name="safety-net-bench")[0]
    rows.append(
        ("demo refund (3 rules), max_auto_amount 100 -> 300", measure(demo_history(agent, args.actions), args.repeat))
    )
    with running_service() as base_url:
        document = yaml.safe_load((AIRLINE / "policy.yaml").read_text())
        for action_type in document["action_types"]:
            for lookup in action_type.get("lookups") or []:
                lookup["url"] = lookup["url"].replace("http://127.0.0.1:8100", base_url)
        policies_import(document=copy.deepcopy(document), actor="bench")
        changed = airline_history(agent, args.actions, base_url)
    rows.append(("airline lookups policy (7 types), auto_approve_max_risk 0.6", measure(changed, args.repeat)))

    lines = [
        "# The safety net of a policy change: replay cost",
        "",
        f"`bench/safety_net.py --actions {args.actions} --repeat {args.repeat}` on {platform.node()} "
        f"({os.cpu_count()} cores, shared), Python {platform.python_version()}, PostgreSQL on loopback.",
        "",
        "Wall: the replay as the change waits for it; CPU: this process's (the engine's) share of it, which",
        "other work on a shared machine inflates less.",
        "",
        "| history | types | queries | replayed | newly auto: unsafe / safe | wall ms (median, min) | CPU ms "
        "| CPU ms per action |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        per = r["cpu_ms"] / r["replayed"] if r["replayed"] else 0
        lines.append(
            f"| {name} | {r['types']} | {r['queries']} | {r['replayed']} | {r['unsafe']} / {r['safe']} | "
            f"{r['median_ms']:.0f}, {r['min_ms']:.0f} | {r['cpu_ms']:.0f} | {per:.2f} |"
        )
    report = "\n".join(lines) + "\n"
    Path(args.report).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
