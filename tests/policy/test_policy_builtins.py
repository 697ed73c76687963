"""Built-in checks, input limits and the time budget of the engine (contract §5, issue: policy engine)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from approvals.policy import engine
from approvals.policy.engine import AUTO_APPROVED, NEEDS_REVIEW, policy_evaluate
from tests.policy.test_policy_engine import policy, proposal


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {"kind": "tool_call", "tool": tool, "args": args, "result": None, "role": "assistant", "content": ""}


def by_rule(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["rule"]: f for f in findings}


def test_builtin_checks_pass_and_leave_findings() -> None:
    decision = policy_evaluate(policy(), proposal())

    found = by_rule(decision.findings)
    assert decision.status == AUTO_APPROVED
    assert found["repeat_of_refused"]["outcome"] == "pass"
    assert found["looping_trajectory"]["outcome"] == "pass"


def test_repeat_of_a_refused_proposal_is_held() -> None:
    decision = policy_evaluate(policy(), proposal(refused_repeat_of={"id": "a-7", "status": "rejected"}))

    finding = by_rule(decision.findings)["repeat_of_refused"]
    assert decision.status == NEEDS_REVIEW
    assert finding["outcome"] == "fail"
    assert finding["effect"] == "review"
    assert finding["repeat_of"] == "a-7"
    assert "rejected" in finding["message"]


def test_three_identical_calls_among_the_last_ten_is_a_loop() -> None:
    # given: the same lookup three times, with other calls between, within the last ten calls
    trajectory = [call("get_order", order_id="A-1001")] + [call("search", q=str(i)) for i in range(3)]
    trajectory += [call("get_order", order_id="A-1001"), call("noop"), call("get_order", order_id="A-1001")]

    decision = policy_evaluate(policy(), proposal(trajectory=trajectory))

    finding = by_rule(decision.findings)["looping_trajectory"]
    assert decision.status == NEEDS_REVIEW
    assert finding["outcome"] == "fail"
    assert "get_order" in finding["message"]
    assert "3 times" in finding["message"]


@pytest.mark.parametrize(
    "trajectory",
    [
        # different arguments are different calls
        [call("get_order", order_id=f"A-{i}") for i in range(10)],
        # twice only
        [call("get_order", order_id="A-1"), call("get_order", order_id="A-1")],
        # the third copy fell out of the last ten calls
        [call("get_order", order_id="A-1")]
        + [call("search", q=str(i)) for i in range(9)]
        + [call("get_order", order_id="A-1"), call("get_order", order_id="A-1")],
    ],
)
def test_no_loop(trajectory: list[dict[str, Any]]) -> None:
    decision = policy_evaluate(policy(), proposal(trajectory=trajectory))

    assert by_rule(decision.findings)["looping_trajectory"]["outcome"] == "pass"


def test_loop_ignores_argument_key_order() -> None:
    first = call("book", a=1, b=2)
    swapped = {**first, "args": {"b": 2, "a": 1}}

    decision = policy_evaluate(policy(), proposal(trajectory=[first, swapped, first]))

    assert by_rule(decision.findings)["looping_trajectory"]["outcome"] == "fail"


def test_builtin_checks_false_turns_them_off() -> None:
    looping = [call("get_order", order_id="A-1001")] * 3

    decision = policy_evaluate(
        policy(builtin_checks=False), proposal(trajectory=looping, refused_repeat_of={"id": "x", "status": "blocked"})
    )

    assert decision.status == AUTO_APPROVED
    assert {"repeat_of_refused", "looping_trajectory"}.isdisjoint(by_rule(decision.findings))


def test_too_long_trajectory_is_held_before_any_rule_runs() -> None:
    steps = [call("search", q=str(i)) for i in range(engine.MAX_TRAJECTORY_STEPS + 1)]
    compiled = policy(rules=[{"name": "always", "require": "true"}])

    decision = policy_evaluate(compiled, proposal(trajectory=steps))

    found = by_rule(decision.findings)
    assert decision.status == NEEDS_REVIEW
    assert found["evaluation"]["error"] == "trajectory too long"
    assert "always" not in found


class SlowProgram:
    """A compiled rule that takes longer than the whole budget, as a runaway CEL call would."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def execute(self, context: Any) -> bool:
        time.sleep(self.seconds)
        return True


class SlowList(SlowProgram):
    """All rules in one call, the call itself running past the budget."""

    def __init__(self, seconds: float, rules: int) -> None:
        super().__init__(seconds)
        self.rules = rules

    def execute(self, context: Any) -> list[bool]:
        super().execute(context)
        return [True] * self.rules


def test_a_single_rule_over_budget_holds_the_action() -> None:
    compiled = dataclasses.replace(policy(rules=[{"name": "slow", "require": "true"}]), combined=SlowList(0.05, 1))

    decision = policy_evaluate(compiled, proposal(), budget_seconds=0.01)

    found = by_rule(decision.findings)
    assert decision.status == NEEDS_REVIEW
    assert found["slow"]["outcome"] == "pass"
    assert found["evaluation"]["outcome"] == "error"
    assert found["evaluation"]["error"] == "time budget exceeded"


def test_rules_after_the_budget_ran_out_are_errors_not_passes() -> None:
    # one rule at a time: the budget is checked between rules
    compiled = policy(rules=[{"name": "slow", "require": "true"}, {"name": "later", "require": "true"}])
    compiled = dataclasses.replace(compiled, combined=None)
    object.__setattr__(compiled.rules[0], "program", SlowProgram(0.05))

    decision = policy_evaluate(compiled, proposal(), budget_seconds=0.01)

    found = by_rule(decision.findings)
    assert decision.status == NEEDS_REVIEW
    assert found["later"]["outcome"] == "error"
    assert "evaluation" not in found  # the skipped rule already says why
