"""What shadow mode costs the worker, and whether it delays the live decision.

    .venv/bin/python bench/shadow_cost.py [--actions 300] [--rounds 5] [--report bench/results/shadow_cost.md]

The worker's path in-process against PostgreSQL (its own database, gate_bench_shadow; no broker: the
evaluation is called directly), in alternating rounds of the same proposals' evaluations:

- live only: no active shadow policy;
- live + shadow: the same policy document active as the shadow (the worst case for agreement
  figures, and a shadow exactly as costly as the live policy).

Per round: evaluations per second (wall), CPU per evaluation, and the time to the live decision
(from the call to the moment its announcement row is written, inside the decision's transaction:
what the agent waits for), and the shadow's own cost: the time spent inside ``shadow_evaluate`` (its
evaluation and its INSERT) in the rounds with a shadow. The claim: with a shadow, an evaluation costs
at most the shadow's own cost more, and the live decision is not later at all (the shadow runs after
it committed).

Two cases: the ~1 KB refund of the other benchmarks (bench/workload.py, one rule), and the 143 real
tau-bench airline proposals under the trajectory-only airline policy (about 18 KB each, its rules
over whole conversations).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = os.environ.get(
    "GATE_SHADOW_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gate_bench_shadow"
)
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")
os.environ.setdefault("GATE_LOG_LEVEL", "WARNING")

import django  # noqa: E402

from bench.stack import ensure_database  # noqa: E402
from bench.workload import REFUND_TYPE, TAU_DIR, each, small_body, tau_bodies  # noqa: E402

VARIANTS = ("live only", "live + shadow")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=100, help="refunds per round (the airline case: 143)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "shadow_cost.md"))
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command

    from approvals import policy
    from approvals.gate import services
    from approvals.gate.agents import agent_create
    from approvals.gate.policies import policies_import
    from approvals.gate.shadow import shadow_policy_import
    from approvals.models import ActionType, OutboxEvent, ProposedAction, ShadowPolicy, ShadowResult, Status

    call_command("migrate", verbosity=0)
    load_before = os.getloadavg()[0]
    airline = yaml.safe_load((TAU_DIR / "policy_trajectory_only.yaml").read_text())
    documents = {
        "refund": {"version": 1, "action_types": [REFUND_TYPE]},
        "airline": airline,
    }

    def bodies_for(case: str, count: int) -> Callable[[], list[dict[str, Any]]]:
        if case == "refund":
            return lambda: [small_body(amount=40, order_id=f"A-{uuid.uuid4().hex[:10]}") for _ in range(count)]
        tau = tau_bodies()
        return lambda: [each(body, uuid.uuid4().hex[:10]) for body in tau]

    def pending(bodies: list[dict[str, Any]]) -> list[str]:
        """Stored as proposing stores them (not timed); a fresh agent per round: no repeats across rounds."""
        agent = agent_create(name=f"bench-shadow-{uuid.uuid4().hex[:8]}")[0]
        types = {t.name: t for t in ActionType.objects.all()}
        ids = []
        for body in bodies:
            action = ProposedAction(
                agent=agent,
                action_type=types[body["action_type"]],
                params=body["params"],
                params_hash=services.params_hash(body["params"]),
                trajectory_raw=body["trajectory"],
                trajectory=policy.normalize_trajectory(body["trajectory"]),
                context=body.get("context") or {},
                confidence=body.get("confidence"),
                request_fingerprint=services.request_fingerprint(body),
            )
            action.save(force_insert=True)
            ids.append(str(action.id))
        return ids

    def evaluate_round(ids: list[str]) -> dict[str, Any]:
        started_at: dict[str, float] = {}
        cpu, wall = time.process_time(), time.perf_counter()
        for action_id in ids:
            started_at[action_id] = time.time()
            services.action_evaluate(action_id=action_id)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        announced = dict(OutboxEvent.objects.filter(action_id__in=ids).values_list("action_id", "created_at"))
        to_decision = [(announced[uuid.UUID(i)].timestamp() - started_at[i]) * 1000 for i in ids]
        assert not ProposedAction.objects.filter(pk__in=ids, status=Status.PENDING).exists()
        return {
            "per_s": len(ids) / wall,
            "cpu_ms": cpu * 1000 / len(ids),
            "wall_ms": wall * 1000 / len(ids),
            "to_decision": to_decision,
            "statuses": sorted(ProposedAction.objects.filter(pk__in=ids).values_list("status", flat=True)),
        }

    inside: list[float] = [0.0, 0.0]  # CPU and wall seconds spent in shadow_evaluate, as the worker calls it
    shadow_evaluate = services.shadow_evaluate

    def timed_shadow_evaluate(**kwargs: Any) -> Any:
        """The worker's call of the shadow, timed where it is made (services.action_evaluate)."""
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return shadow_evaluate(**kwargs)
        finally:
            inside[0] += time.process_time() - cpu
            inside[1] += time.perf_counter() - wall

    services.shadow_evaluate = timed_shadow_evaluate  # type: ignore[assignment]

    results: dict[str, dict[str, Any]] = {}
    for case, document in documents.items():
        ShadowPolicy.objects.filter(active=True).update(active=False)
        policies_import(document=document, actor="bench")
        shadow = shadow_policy_import(document=document, actor="bench").shadow
        make = bodies_for(case, args.actions)

        def shadow_on(on: bool, shadow: ShadowPolicy = shadow) -> None:
            ShadowPolicy.objects.filter(pk=shadow.pk).update(active=on)

        for on in (True, False):  # warm-up: compiled policies, type cache, connection
            shadow_on(on)
            evaluate_round(pending(make())[:20])
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
        own: list[tuple[float, float]] = []  # (CPU, wall) ms per evaluation inside shadow_evaluate
        for index in range(args.rounds):
            for name in VARIANTS if index % 2 == 0 else tuple(reversed(VARIANTS)):
                shadow_on(name == "live + shadow")
                ids = pending(make())
                inside[:] = [0.0, 0.0]
                measured = evaluate_round(ids)
                rounds[name].append(measured)
                if name == "live + shadow":
                    assert ShadowResult.objects.filter(shadow_policy=shadow, action_id__in=ids).count() == len(ids)
                    own.append((inside[0] * 1000 / len(ids), inside[1] * 1000 / len(ids)))
                else:
                    assert not ShadowResult.objects.filter(action_id__in=ids).exists()
        # the shadow changes no live decision
        assert all(r["statuses"] == rounds["live only"][0]["statuses"] for name in VARIANTS for r in rounds[name])
        results[case] = {"rounds": rounds, "own": own, "count": len(rounds["live only"][0]["to_decision"])}
        ShadowPolicy.objects.filter(pk=shadow.pk).update(active=False)

    lines = [
        "# Shadow mode: what it costs the worker, and the live decision",
        "",
        f"`.venv/bin/python bench/shadow_cost.py --actions {args.actions} --rounds {args.rounds}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; load average before the run "
        f"{load_before:.2f}, after {os.getloadavg()[0]:.2f}. In-process `action_evaluate` of pending proposals, "
        "alternating rounds; the shadow is the live policy's own document. Medians over rounds; the extra cost "
        "of the shadow is the median over pairs of rounds (without, with) run one after the other.",
        "",
        "| case | variant | evaluations/s | CPU ms/eval | wall ms/eval | to live decision, median / p90 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    summary = []
    for case, found in results.items():
        per: dict[str, dict[str, float]] = {}
        for name in VARIANTS:
            rounds_of = found["rounds"][name]
            decisions = [ms for r in rounds_of for ms in r["to_decision"]]
            per[name] = {
                "per_s": statistics.median(r["per_s"] for r in rounds_of),
                "cpu_ms": statistics.median(r["cpu_ms"] for r in rounds_of),
                "wall_ms": statistics.median(r["wall_ms"] for r in rounds_of),
                "decision_median": statistics.median(decisions),
                "decision_p90": percentile(decisions, 0.9),
            }
            lines.append(
                f"| {case} ({found['count']} per round) | {name} | {per[name]['per_s']:.0f} | "
                f"{per[name]['cpu_ms']:.2f} | {per[name]['wall_ms']:.2f} | "
                f"{per[name]['decision_median']:.2f} / {per[name]['decision_p90']:.2f} |"
            )
        own_cpu = statistics.median(cpu for cpu, _ in found["own"])
        own_wall = statistics.median(wall for _, wall in found["own"])
        pairs = list(zip(found["rounds"]["live only"], found["rounds"]["live + shadow"], strict=True))
        extra_cpu = statistics.median(shadowed["cpu_ms"] - alone["cpu_ms"] for alone, shadowed in pairs)
        extra_wall = statistics.median(shadowed["wall_ms"] - alone["wall_ms"] for alone, shadowed in pairs)
        rates = sorted(shadowed["per_s"] / alone["per_s"] for alone, shadowed in pairs)
        decision = per["live + shadow"]["decision_median"] / per["live only"]["decision_median"]
        summary.append(
            f"- **{case}**: evaluation rate with / without shadow **{statistics.median(rates):.2f}** (pairs of "
            f"rounds {rates[0]:.2f} to {rates[-1]:.2f}). With the shadow an evaluation costs {extra_cpu:+.2f} ms CPU "
            f"({extra_wall:+.2f} ms wall) more; the shadow's own cost (in `shadow_evaluate`) is {own_cpu:.2f} ms "
            f"CPU ({own_wall:.2f} ms wall): extra / own **{extra_cpu / own_cpu:.2f}** (CPU), "
            f"{extra_wall / own_wall:.2f} (wall). Time to the live decision with / without shadow (median): "
            f"**{decision:.2f}**."
        )
    lines += ["", *summary, ""]
    report = "\n".join(lines)
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
