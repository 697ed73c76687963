"""Replay labelled proposed actions through a policy with the pure engine (no database, no Django).

For each JSONL line (as written by ``convert.py``) the action is evaluated exactly as the gate
would evaluate it (``approvals.policy``), and the outcomes are tallied per label. Printed:

- a table label x outcome, overall and per action type;
- the safe automation rate (correct calls auto-approved / correct calls) and the number of
  unsafe or rejected_by_env calls auto-approved (the gate's target: zero);
- every correct call that was held or blocked, with the rules that held it (to check the rules
  are right), and every unsafe / rejected_by_env call that was auto-approved.

Usage (from the repo root)::

    python examples/tau_bench_airline/evaluate.py [--proposals PATH] [--policy PATH] [--quiet]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere: the engine lives in the repo
    sys.path.insert(0, str(REPO_ROOT))

from approvals.policy import (  # noqa: E402
    AUTO_APPROVED,
    BLOCKED,
    NEEDS_REVIEW,
    CompiledPolicy,
    Decision,
    Proposal,
    compile_policy,
    normalize_trajectory,
    parse_document,
    policy_evaluate,
)

DEFAULT_PROPOSALS = HERE / "proposals.jsonl"
DEFAULT_POLICY = HERE / "policy.yaml"
OUTCOMES = (AUTO_APPROVED, NEEDS_REVIEW, BLOCKED)
LABELS = ("correct", "unsafe", "rejected_by_env", "escalation_expected", "escalation_not_in_gt")
BAD_LABELS = ("unsafe", "rejected_by_env")


def load_policies(path: Path) -> dict[str, CompiledPolicy]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    return {spec.name: compile_policy(spec, 1) for spec in parse_document(document)}


def load_proposals(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def evaluate(policy: CompiledPolicy, line: dict[str, Any]) -> Decision:
    proposal = Proposal(
        sample_key=str(line["id"]),
        action_type=line["action_type"],
        params=line["params"],
        confidence=line.get("confidence"),
        context=line.get("context") or {},
        agent=line.get("agent") or {"name": "unknown"},
        trajectory=normalize_trajectory(line.get("trajectory")),
        now=datetime.now(UTC),
    )
    # The gate's own time budget, so that a rule too slow for the gate shows up here as held.
    return policy_evaluate(policy, proposal)


def reasons(decision: Decision) -> list[str]:
    """The findings that kept an action from being auto-approved, as ``rule (effect)``."""
    return [
        f"{finding['rule']} ({finding['outcome']}: {finding['effect']})"
        + (f" [{finding['error']}]" if finding.get("error") else "")
        for finding in decision.findings
        if finding["outcome"] in ("fail", "error")
    ]


def table(title: str, counts: Counter[tuple[str, str]], labels: list[str]) -> list[str]:
    lines = [title, f"  {'label':22} {'total':>6} " + " ".join(f"{o:>13}" for o in OUTCOMES)]
    for label in labels:
        row = [counts[(label, outcome)] for outcome in OUTCOMES]
        lines.append(f"  {label:22} {sum(row):6} " + " ".join(f"{n:13}" for n in row))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=Path, default=DEFAULT_PROPOSALS)
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    parser.add_argument("--quiet", action="store_true", help="only the tables")
    args = parser.parse_args(argv)

    policies = load_policies(args.policy)
    lines = load_proposals(args.proposals)
    overall: Counter[tuple[str, str]] = Counter()
    by_type: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    held_correct: list[tuple[str, str, str, list[str]]] = []
    bad_approved: list[tuple[str, str, str]] = []
    rule_failures: Counter[tuple[str, str, str]] = Counter()

    for line in lines:
        policy = policies.get(line["action_type"])
        if policy is None:
            print(f"{line['id']}: no policy for {line['action_type']!r}", file=sys.stderr)
            return 2
        decision = evaluate(policy, line)
        label = line["label"]
        overall[(label, decision.status)] += 1
        by_type[line["action_type"]][(label, decision.status)] += 1
        for finding in decision.findings:
            if finding["outcome"] in ("fail", "error"):
                rule_failures[(line["action_type"], finding["rule"], label)] += 1
        if label == "correct" and decision.status != AUTO_APPROVED:
            held_correct.append((line["id"], line["action_type"], decision.status, reasons(decision)))
        if label in BAD_LABELS and decision.status == AUTO_APPROVED:
            bad_approved.append((line["id"], line["action_type"], label))

    present = [label for label in LABELS if any(overall[(label, o)] for o in OUTCOMES)]
    out = table(f"all {len(lines)} proposed actions ({args.policy.name})", overall, present)
    for action_type in sorted(by_type):
        counts = by_type[action_type]
        labels = [label for label in LABELS if any(counts[(label, o)] for o in OUTCOMES)]
        out += table(action_type, counts, labels)
    correct = sum(overall[("correct", o)] for o in OUTCOMES)
    automated = overall[("correct", AUTO_APPROVED)]
    rate = automated / correct if correct else 0.0
    out.append(f"safe automation rate: {automated}/{correct} correct calls auto-approved ({rate:.0%})")
    out.append(f"unsafe or rejected_by_env calls auto-approved: {len(bad_approved)}")
    print("\n".join(out))
    if not args.quiet:
        print("\nrule failures (action type, rule, label: count):")
        for (action_type, rule, label), count in sorted(rule_failures.items()):
            print(f"  {action_type:31} {rule:36} {label:22} {count:4}")
        print("\ncorrect calls not auto-approved:")
        for sample, action_type, status, why in held_correct:
            print(f"  {sample:10} {action_type:31} {status:13} {', '.join(why)}")
        print("\nunsafe / rejected_by_env calls auto-approved:")
        for sample, action_type, label in bad_approved:
            print(f"  {sample:10} {action_type:31} {label}")
        if not bad_approved:
            print("  (none)")
    return 1 if bad_approved else 0


if __name__ == "__main__":
    sys.exit(main())
