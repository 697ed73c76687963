"""Policy evaluations per second on one core, beside a jsonschema-only check of the same params.

    .venv/bin/python bench/policy_eval.py [--seconds 3] [--report bench/results/policy_eval.md]

Each figure is a ratio against the baseline measured in the same run: a reused `jsonschema`
Draft 2020-12 validator checking the same params (a gate doing nothing but tool validation). The
gate and its baseline are measured in alternating rounds (baseline, gate, gate, baseline, ...) and
each reported as its median, so that a slower minute of a shared machine falls on both.

The goals are ratios. They were set as rates (5,000/s small, 500/s airline, 200/s airline with
lookups) on the machine of 2026-12-06, whose same-run baselines were 74,255/s (small) and
17,352/s (airline, schema only); machines here differ by up to 4x from day to day, so a rate alone
says more about the machine than about the gate. The lookups case is also reported against the
trajectory-only evaluation of the same proposals in the same run (the cost of gathering evidence).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from approvals.policy import (  # noqa: E402
    Proposal,
    compile_policy,
    normalize_trajectory,
    parse_action_type,
    parse_document,
    policy_evaluate,
)
from approvals.policy.engine import rule_context  # noqa: E402

AIRLINE = ROOT / "examples" / "tau_bench_airline"
AIRLINE_POLICY = AIRLINE / "policy.yaml"  # with lookups: the service of record answers them
AIRLINE_TRAJECTORY_ONLY = AIRLINE / "policy_trajectory_only.yaml"  # every rule reads the trajectory
AIRLINE_PROPOSALS = AIRLINE / "proposals.jsonl"

SMALL_POLICY = {
    "name": "refund",
    "params_schema": {
        "type": "object",
        "required": ["order_id", "amount"],
        "additionalProperties": False,
        "properties": {
            "order_id": {"type": "string", "pattern": "^[A-Z]-[0-9]+$"},
            "amount": {"type": "number", "minimum": 0},
            "reason": {"type": "string", "maxLength": 500},
        },
    },
    "base_risk": 0.1,
    "auto_approve_max_risk": 0.3,
    "amount_path": "amount",
    "max_auto_amount": 100,
    "rules": [
        {
            "name": "order_was_looked_up",
            "require": "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)",
        },
        {
            "name": "within_total",
            "on_fail": "block",
            "require": "trajectory.all(s, s.tool != 'get_order' || double(params.amount) <= double(s.result.total))",
        },
        {
            "name": "customer_asked",
            "on_fail": "risk",
            "risk": 0.3,
            "require": "trajectory.exists(s, s.kind == 'message' && s.role == 'user')",
        },
    ],
}
SMALL_TRAJECTORY = [
    {"kind": "message", "role": "user", "content": "My blender arrived broken, order A-1001"},
    {"kind": "tool_call", "tool": "get_customer", "args": {"email": "c@example.com"}, "result": '{"id": "C-19"}'},
    {
        "kind": "tool_call",
        "tool": "get_order",
        "args": {"order_id": "A-1001"},
        "result": '{"order_id": "A-1001", "total": 120.0, "status": "delivered"}',
    },
    {"kind": "message", "role": "assistant", "content": "I can refund 42.50 for the damaged item."},
    {"kind": "message", "role": "user", "content": "Yes please"},
]


# The rate goals of 2026-12-06 over that run's baselines (see the module docstring).
GOAL_SMALL = 5000 / 74255
GOAL_AIRLINE = 500 / 17352
GOAL_LOOKUPS = 200 / 17352


def rate(work: Callable[[], int], seconds: float) -> float:
    """Units of work per second over at least ``seconds`` (after one warm-up call)."""
    work()
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        done += work()
    return done / elapsed


def alternating(gate: Callable[[], int], baseline: Callable[[], int], seconds: float, rounds: int) -> tuple:
    """Medians of ``gate`` and ``baseline`` rates over ``rounds`` alternating pairs, and each round's ratio."""
    gates, baselines = [], []
    for index in range(rounds):
        pair = (baseline, gate) if index % 2 == 0 else (gate, baseline)
        measured = {id(work): rate(work, seconds / rounds) for work in pair}
        gates.append(measured[id(gate)])
        baselines.append(measured[id(baseline)])
    ratios = [g / b for g, b in zip(gates, baselines, strict=True)]
    return statistics.median(gates), statistics.median(baselines), ratios


def proposal(line: dict[str, Any], now: datetime) -> Proposal:
    return Proposal(
        sample_key=str(line.get("id", "x")),
        action_type=line["action_type"],
        params=line["params"],
        confidence=line.get("confidence"),
        context=line.get("context") or {},
        agent=line.get("agent") or {"name": "bench"},
        trajectory=normalize_trajectory(line.get("trajectory")),
        now=now,
    )


def small_case(seconds: float, rounds: int) -> dict[str, Any]:
    compiled = compile_policy(parse_action_type(SMALL_POLICY), 1)
    now = datetime.now(UTC)
    case = proposal(
        {"action_type": "refund", "params": {"order_id": "A-1001", "amount": 42.5}, "trajectory": SMALL_TRAJECTORY}, now
    )
    assert policy_evaluate(compiled, case).status == "auto_approved"

    def evaluate() -> int:
        for _ in range(200):
            policy_evaluate(compiled, case)
        return 200

    reference = Draft202012Validator(compiled.spec.params_schema)

    def baseline() -> int:
        for _ in range(200):
            reference.is_valid(case.params)
        return 200

    full, schema_only, ratios = alternating(evaluate, baseline, seconds, rounds)
    return {
        "case": "small policy (schema + 3 rules, 5-step trajectory)",
        "evaluations_per_s": full,
        "baseline_per_s": schema_only,
        "ratio": full / schema_only,
        "rounds": ratios,
        "goal": GOAL_SMALL,
    }


def airline_cases(policy_path: Path, now: datetime) -> tuple[list[tuple[Any, Proposal]], list[dict]]:
    specs = parse_document(yaml.safe_load(policy_path.read_text()))
    compiled = {spec.name: compile_policy(spec, 1) for spec in specs}
    lines = [json.loads(text) for text in AIRLINE_PROPOSALS.read_text().splitlines() if text.strip()]
    return [(compiled[line["action_type"]], proposal(line, now)) for line in lines], lines


def schema_only_of(cases: list[tuple[Any, Proposal]]) -> Callable[[], int]:
    """The baseline: the same proposals' params checked by reused Python validators, nothing else."""
    references = {policy.spec.name: Draft202012Validator(policy.spec.params_schema) for policy, _ in cases}

    def baseline() -> int:
        for _, case in cases:
            references[case.action_type].is_valid(case.params)
        return len(cases)

    return baseline


def trajectory_only_of(cases: list[tuple[Any, Proposal]]) -> Callable[[], int]:
    def evaluate() -> int:
        for policy, case in cases:
            policy_evaluate(policy, case)
        return len(cases)

    return evaluate


def airline_case(seconds: float, rounds: int) -> dict[str, Any] | None:
    policy_path = AIRLINE_TRAJECTORY_ONLY if AIRLINE_TRAJECTORY_ONLY.exists() else AIRLINE_POLICY
    if not (policy_path.exists() and AIRLINE_PROPOSALS.exists()):
        return None
    cases, lines = airline_cases(policy_path, datetime.now(UTC))
    steps = sum(len(case.trajectory) for _, case in cases) / len(cases)

    def convert() -> int:
        # What the reference CEL binding costs just to receive each action's variables.
        for policy, case in cases:
            rule_context(policy, case)
        return len(cases)

    def normalise() -> int:
        for line in lines:
            normalize_trajectory(line.get("trajectory"))
        return len(lines)

    full, schema_only, ratios = alternating(trajectory_only_of(cases), schema_only_of(cases), seconds, rounds)
    return {
        "case": f"tau-bench airline, trajectory only ({len(cases)} real proposals, {steps:.0f} steps on average)",
        "evaluations_per_s": full,
        "baseline_per_s": schema_only,
        "ratio": full / schema_only,
        "rounds": ratios,
        "goal": GOAL_AIRLINE,
        "normalisations_per_s": rate(normalise, seconds),
        "conversions_per_s": rate(convert, seconds),
    }


@contextmanager
def service_of_record() -> Iterator[str]:
    """The airline's service (examples/tau_bench_airline/service.py) in a process of its own, on
    the other core, so that this process's core measures the gate alone; yields its base URL."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    other = set(cores[1:2] or cores)
    process = subprocess.Popen(
        [sys.executable, str(AIRLINE / "service.py"), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, other)) if other else None,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def airline_lookups_case(seconds: float, rounds: int) -> dict[str, Any] | None:
    """The airline policy with its lookups (and history) answered as a worker answers them: each
    lookup an HTTP GET to the service of record on loopback, history from the (embedded) database.
    Measured in alternating rounds against the schema-only baseline and against the trajectory-only
    policy on the same proposals."""
    document = yaml.safe_load(AIRLINE_POLICY.read_text()) if AIRLINE_POLICY.exists() else None
    if not document or not any(t.get("lookups") for t in document["action_types"]):
        return None
    sys.path.insert(0, str(AIRLINE))
    import replay  # the example's embedded gate: Django on SQLite, lookups allowed to loopback

    replay.embedded_gate()
    from approvals.evidence.history import history_values
    from approvals.evidence.lookups import lookup_findings, lookups_fetch

    now = datetime.now(UTC)
    trajectory_only, _ = airline_cases(AIRLINE_TRAJECTORY_ONLY, now)
    with service_of_record() as base_url:
        specs = parse_document(replay.pointed_at(document, base_url))
        compiled = {spec.name: compile_policy(spec, 1) for spec in specs}
        lines = [json.loads(text) for text in AIRLINE_PROPOSALS.read_text().splitlines() if text.strip()]
        cases = [(compiled[line["action_type"]], proposal(line, now)) for line in lines]
        requests = sum(len(policy.spec.lookups) for policy, _ in cases) / len(cases)

        def evaluate() -> int:
            for policy, case in cases:
                answers = lookups_fetch(policy, case)
                history, failed, _ = history_values(policy, case, action_id=None, now=now)
                gathered = dataclasses.replace(
                    case,
                    lookups={a.name: a.value for a in answers},
                    history=history,
                    evidence_findings=tuple(lookup_findings(answers) + failed),
                )
                policy_evaluate(policy, gathered)
            return len(cases)

        full, schema_only, ratios = alternating(evaluate, schema_only_of(cases), seconds, rounds)
        _, trajectory_rate, against_trajectory = alternating(
            evaluate, trajectory_only_of(trajectory_only), seconds, rounds
        )
    return {
        "case": f"tau-bench airline with lookups ({requests:.1f} lookups per proposal, answered by the service "
        "of record on loopback)",
        "evaluations_per_s": full,
        "baseline_per_s": schema_only,
        "ratio": full / schema_only,
        "rounds": ratios,
        "goal": GOAL_LOOKUPS,
        "trajectory_only_per_s": trajectory_rate,
        "against_trajectory_only": statistics.median(against_trajectory),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="per case and side, split over the rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "policy_eval.md"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    cases = (
        small_case(args.seconds, args.rounds),
        airline_case(args.seconds, args.rounds),
        airline_lookups_case(args.seconds, args.rounds),
    )
    results = [r for r in cases if r]
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    lines = [
        "# Policy evaluation benchmark",
        "",
        f"`.venv/bin/python bench/policy_eval.py` on {machine}, one core, "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "Full evaluation = schema + every rule + built-in checks + risk, on normalised trajectories.",
        "Baseline = a reused `jsonschema` Draft 2020-12 validator on the same params, in the same run;",
        f"gate and baseline in {args.rounds} alternating rounds, medians. Goals are ratios: the rates set on",
        "2026-12-06 (5,000 / 500 / 200 per s) over that day's baselines (74,255 / 17,352 per s).",
        "",
        "| case | evaluations/s | schema-only/s | ratio (rounds) | goal | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        met = "yes" if r["ratio"] >= r["goal"] else "NO"
        rounds = ", ".join(f"{x:.4f}" for x in r["rounds"])
        lines.append(
            f"| {r['case']} | {r['evaluations_per_s']:,.0f} | {r['baseline_per_s']:,.0f} | "
            f"{r['ratio']:.4f} ({rounds}) | ≥ {r['goal']:.4f} | {met} |"
        )
    for r in results:
        if "normalisations_per_s" in r:
            lines.append("")
            lines.append(
                f"Normalising those trajectories from OpenAI messages (done once, when proposed): "
                f"{r['normalisations_per_s']:,.0f}/s."
            )
            lines.append(
                f"Handing those variables to the CEL binding alone (`cel.Context`, once per action): "
                f"{r['conversions_per_s']:,.0f}/s, i.e. {1e3 / r['conversions_per_s']:.2f} ms of the "
                f"{1e3 / r['evaluations_per_s']:.2f} ms an evaluation takes."
            )
        if "against_trajectory_only" in r:
            lines.append("")
            lines.append(
                f"With lookups against the trajectory-only policy on the same proposals, same run: "
                f"{r['evaluations_per_s']:,.0f}/s against {r['trajectory_only_per_s']:,.0f}/s, "
                f"{r['against_trajectory_only']:.2f}x (the cost of gathering the evidence and of the rules reading it)."
            )
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.report).write_text(report)


if __name__ == "__main__":
    main()
