"""Policy tests (contract §6.2): each type's example proposals evaluated by the decision procedure,
their status compared with what the test expects. Pure: no ORM, no HTTP.

A test's proposal is built as ``manage.py replay`` builds a line's (``proposal_from_line``), at the
time of the run. Its ``lookups`` stand in for the type's lookups: a lookup the test does not answer
is a failed lookup (an ``error`` finding ``lookup:<name>``, the action held), as in the gate, which
never auto-approves on missing evidence. Its ``history`` sets history aggregates; one it does not
set reads 0, the value of an empty history (a test states what it relies on). The built-in checks
run on the trajectory alone: there is no stored action for a test to repeat.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from approvals.policy.engine import CompiledPolicy, Decision, compile_policy, policy_evaluate
from approvals.policy.findings import finding
from approvals.policy.replay import proposal_from_line
from approvals.policy.spec import ActionTypeSpec, PolicyError
from approvals.policy.tests_spec import PolicyTestSpec

TEST_AGENT = {"name": "policy-test"}
THRESHOLD_FINDINGS = ("risk", "confidence", "amount")


@dataclass(frozen=True)
class PolicyTestResult:
    action_type: str
    test: PolicyTestSpec
    decision: Decision

    @property
    def passed(self) -> bool:
        return self.decision.status == self.test.expect

    @property
    def failing_findings(self) -> list[dict[str, Any]]:
        return [f for f in self.decision.findings if f.get("outcome") != "pass"]

    @property
    def explanation(self) -> list[str]:
        """Why it got its status: the checks that did not pass, or, when every check passed, the
        thresholds it was within (risk, confidence, amount)."""
        failing = self.failing_findings
        if failing:
            return [_finding_text(f) for f in failing]
        return ["no check failed"] + [
            _finding_text(f) for f in self.decision.findings if f.get("rule") in THRESHOLD_FINDINGS
        ]

    def report(self) -> str:
        """One line: the test, what it expected and what it got, and why."""
        return (
            f"{self.action_type}: test {self.test.name!r}: expected {self.test.expect}, got {self.decision.status}"
            f" ({'; '.join(self.explanation)})"
        )


def _finding_text(found: dict[str, Any]) -> str:
    detail = found.get("message") or found.get("error") or ""
    return f"{found.get('rule')} {found.get('outcome')}" + (f": {detail}" if detail else "")


class PolicyTestsFailed(PolicyError):
    """A policy whose own tests fail; ``failures`` says which, with what each got."""

    def __init__(self, failures: list[PolicyTestResult]) -> None:
        super().__init__([failure.report() for failure in failures])
        self.failures = failures


def _history_default(aggregate: str) -> Any:
    return 0 if aggregate == "count" else 0.0


def policy_test_evaluate(policy: CompiledPolicy, test: PolicyTestSpec, *, now: datetime) -> Decision:
    """The decision the policy gives the test's proposal, with its canned evidence."""
    spec = policy.spec
    agent = {**TEST_AGENT, **(test.proposal.get("agent") or {})}
    line = {**test.proposal, "agent": agent, "action_type": spec.name, "id": f"policy-test:{test.name}"}
    proposal = proposal_from_line(line, number=0, now=now)
    missing = [lookup.name for lookup in spec.lookups if lookup.name not in test.lookups]
    proposal = dataclasses.replace(
        proposal,
        lookups={lookup.name: test.lookups.get(lookup.name) for lookup in spec.lookups},
        history={h.name: test.history.get(h.name, _history_default(h.aggregate)) for h in spec.history},
        evidence_findings=tuple(
            finding(
                f"lookup:{name}",
                "error",
                "review",
                f"lookup {name} failed: this test gives it no answer, so a person decides",
                error="no canned answer in the test",
            )
            for name in missing
        ),
    )
    return policy_evaluate(policy, proposal)


def policy_tests_run(
    specs: list[ActionTypeSpec], *, now: datetime | None = None, compiled: dict[str, CompiledPolicy] | None = None
) -> list[PolicyTestResult]:
    """Every test of every type, in order. ``compiled``: policies already compiled, by type name."""
    now = now or datetime.now(UTC)
    results: list[PolicyTestResult] = []
    for spec in specs:
        if not spec.tests:
            continue
        policy = (compiled or {}).get(spec.name) or compile_policy(spec, 0)
        results.extend(
            PolicyTestResult(action_type=spec.name, test=test, decision=policy_test_evaluate(policy, test, now=now))
            for test in spec.tests
        )
    return results


def policy_tests_check(specs: list[ActionTypeSpec], **options: Any) -> list[PolicyTestResult]:
    """Run every test; raise PolicyTestsFailed naming each one that fails. Returns the results."""
    results = policy_tests_run(specs, **options)
    failures = [result for result in results if not result.passed]
    if failures:
        raise PolicyTestsFailed(failures)
    return results
