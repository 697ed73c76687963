"""What the runaway guard costs on the hot path: each evaluation as the gate runs it now (the
estimate at the action's size decides in-process or the supervised child) against the path before
it (always in-process, one CEL call), in the same process, on one core, in alternating rounds.

    .venv/bin/python bench/rule_run_overhead.py [--seconds 2] [--rounds 10] [--report FILE]

The cases of bench/policy_eval.py: the small policy; the airline's trajectory-only policy on its
143 real proposals; the airline policy with its lookups, answered once by the service of record
beforehand (so that the rules alone are compared, not the HTTP around them). Interleaving the
two paths in one process makes the comparison fair on a shared machine: a busy minute falls on
both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import policy_eval as bench  # noqa: E402

from approvals.policy import compile_policy, engine, parse_action_type, parse_document, supervised  # noqa: E402
from approvals.policy.rule_run import _in_process_findings, rule_context, rule_findings  # noqa: E402


def before(policy: Any, proposal: Any, *, budget_seconds: float) -> list[dict]:
    """The path before the guard: the context, then every rule in-process."""
    return _in_process_findings(policy, rule_context(policy, proposal), budget_seconds)


def compare(cases: list[tuple[Any, Any]], seconds: float, rounds: int) -> dict[str, Any]:
    def evaluate() -> int:
        for policy, proposal in cases:
            engine.policy_evaluate(policy, proposal)
        return len(cases)

    rates: dict[str, list[float]] = {"before": [], "now": []}
    paths: dict[str, Callable[..., list[dict]]] = {"before": before, "now": rule_findings}
    for index in range(rounds):
        for name in ("before", "now") if index % 2 == 0 else ("now", "before"):
            engine.rule_findings = paths[name]
            rates[name].append(bench.rate(evaluate, seconds / rounds))
    engine.rule_findings = rule_findings
    ratios = [now / then for now, then in zip(rates["now"], rates["before"], strict=True)]
    return {
        "before": statistics.median(rates["before"]),
        "now": statistics.median(rates["now"]),
        "ratio": statistics.median(ratios),
        "in_child": sum(1 for policy, proposal in cases if routed_to_child(policy, proposal)),
        "cases": len(cases),
    }


def routed_to_child(policy: Any, proposal: Any) -> bool:
    calls = []
    original = supervised.rules_run

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    supervised.rules_run = counting
    try:
        rule_findings(policy, proposal, budget_seconds=engine.DEFAULT_TIME_BUDGET_SECONDS)
    finally:
        supervised.rules_run = original
    return bool(calls)


def lookups_cases(now: datetime) -> list[tuple[Any, Any]]:
    sys.path.insert(0, str(bench.AIRLINE))
    import replay  # type: ignore[import-not-found]  # the example's embedded gate (Django on SQLite)

    replay.embedded_gate()
    from approvals.evidence.history import history_values
    from approvals.evidence.lookups import lookup_findings, lookups_fetch

    document = yaml.safe_load(bench.AIRLINE_POLICY.read_text())
    with bench.service_of_record() as base_url:
        compiled = {s.name: compile_policy(s, 1) for s in parse_document(replay.pointed_at(document, base_url))}
        lines = [json.loads(text) for text in bench.AIRLINE_PROPOSALS.read_text().splitlines() if text.strip()]
        cases = []
        for line in lines:
            policy, case = compiled[line["action_type"]], bench.proposal(line, now)
            answers = lookups_fetch(policy, case)
            history, failed, _ = history_values(policy, case, action_id=None, now=now)
            gathered = dataclasses.replace(
                case,
                lookups={a.name: a.value for a in answers},
                history=history,
                evidence_findings=tuple(lookup_findings(answers) + failed),
            )
            cases.append((policy, gathered))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="per case and path, over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "rule_run_overhead.md"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, the child's too
    supervised.child_start()
    supervised._child().wait_ready()
    now = datetime.now(UTC)
    small = compile_policy(parse_action_type(bench.SMALL_POLICY), 1)
    small_proposal = bench.proposal(
        {
            "action_type": "refund",
            "params": {"order_id": "A-1001", "amount": 42.5},
            "trajectory": bench.SMALL_TRAJECTORY,
        },
        now,
    )
    airline, _ = bench.airline_cases(bench.AIRLINE_TRAJECTORY_ONLY, now)
    cases = {
        "small policy (schema + 3 rules, 5-step trajectory)": [(small, small_proposal)] * 50,
        "tau-bench airline, trajectory only (143 real proposals)": airline,
        "tau-bench airline with lookups (answered beforehand)": lookups_cases(now),
    }
    lines = [
        "# The runaway guard on the hot path",
        "",
        f"`.venv/bin/python bench/rule_run_overhead.py` on one core, load {os.getloadavg()[0]:.1f}, "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {args.rounds} alternating rounds, medians.",
        "",
        "| case | before (evaluations/s) | now (evaluations/s) | now / before | evaluated in the child |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, listed in cases.items():
        found = compare(listed, args.seconds, args.rounds)
        lines.append(
            f"| {label} | {found['before']:,.0f} | {found['now']:,.0f} | {found['ratio']:.3f} | "
            f"{found['in_child']} of {found['cases']} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
