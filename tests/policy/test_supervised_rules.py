"""Rules that the estimate at the action's size does not keep well within the budget run in a
supervised child process, ended at the budget: a runaway holds the action within the budget,
naming the rule, and this process carries on. The real CEL binding and real child processes throughout; no database."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from approvals.policy import (
    AUTO_APPROVED,
    NEEDS_REVIEW,
    Proposal,
    compile_policy,
    parse_action_type,
    policy_evaluate,
    rule_run,
    supervised,
)

BUDGET = 0.4
# Accepted at import (a filter is expected to keep a tenth of the steps). On a trajectory of
# nothing but searches it keeps them all, copying the list it builds at every step: seconds.
SLIPS_THROUGH = "trajectory.filter(s, s.tool == 'search').size() >= 0"


def steps(count: int, tool: str = "search") -> list[dict[str, Any]]:
    return [
        {"kind": "tool_call", "tool": tool, "args": {"q": str(i)}, "result": [], "role": "assistant", "content": ""}
        for i in range(count)
    ]


def policy(*rules: tuple[str, str]) -> Any:
    spec = parse_action_type(
        {
            "name": "refund",
            "params_schema": {"type": "object"},
            "rules": [{"name": name, "require": require} for name, require in rules],
        }
    )
    return compile_policy(spec, 1)


def proposal(trajectory: list[dict[str, Any]], params: Any = None) -> Proposal:
    return Proposal(
        sample_key="k",
        action_type="refund",
        params=params if params is not None else {},
        confidence=None,
        context={},
        agent={"name": "a"},
        trajectory=trajectory,
        now=datetime.now(UTC),
    )


def outcomes(decision: Any) -> dict[str, tuple[str, str]]:
    return {f["rule"]: (f["outcome"], f.get("error", "")) for f in decision.findings}


@pytest.fixture
def ready_child() -> int:
    """This thread's child, started and ready (as a worker process has it from its start)."""
    supervised.child_start()
    child = supervised._child()
    child.wait_ready()
    return child.process.pid


def test_a_rule_that_slips_through_the_estimate_is_stopped_at_the_budget_and_named(ready_child: int) -> None:
    # given: a rule before it, the runaway, a rule after it; the longest trajectory
    compiled = policy(
        ("looked_up", "trajectory.exists(s, s.tool == 'search')"), ("runaway", SLIPS_THROUGH), ("after", "true")
    )

    # when
    started = time.monotonic()
    decision = policy_evaluate(compiled, proposal(steps(1000)), budget_seconds=BUDGET)
    elapsed = time.monotonic() - started

    # then: held within the budget (and the encoding around it), the runaway named with the budget
    assert decision.status == NEEDS_REVIEW
    assert elapsed < BUDGET + 0.5, elapsed
    found = outcomes(decision)
    assert found["looked_up"] == ("pass", "")  # what finished stands
    assert found["runaway"] == ("error", "time budget exceeded")
    assert found["after"] == ("error", "time budget exceeded")
    stopped = next(f for f in decision.findings if f["rule"] == "runaway")
    assert "rule runaway was stopped" in stopped["message"]
    assert "400 ms (GATE_EVALUATION_BUDGET_MS)" in stopped["message"]
    # the child that ran it was ended (and a new one started); this process carries on
    with pytest.raises(ProcessLookupError):
        os.kill(ready_child, 0)
    assert supervised._child().process.pid != ready_child


def test_after_a_runaway_the_next_evaluation_is_answered_by_a_fresh_child(ready_child: int) -> None:
    compiled = policy(("runaway", SLIPS_THROUGH))
    assert policy_evaluate(compiled, proposal(steps(1000)), budget_seconds=BUDGET).status == NEEDS_REVIEW

    # when: the same rule over a trajectory where it is quick, but still sent to the child
    decision = policy_evaluate(compiled, proposal(steps(1000, tool="read")), budget_seconds=5)

    # then
    assert outcomes(decision)["runaway"] == ("pass", "")
    assert decision.status == AUTO_APPROVED


def test_what_the_estimate_at_this_size_keeps_within_the_budget_stays_in_process() -> None:
    compiled = policy(
        ("looked_up", "trajectory.exists(s, s.tool == 'search' && s.args.q == '1')"),
        ("runaway", SLIPS_THROUGH),
        ("listed", "params.items.filter(i, i > 0).size() >= 0"),
    )

    def stays(trajectory: list[dict[str, Any]], params: dict[str, Any]) -> bool:
        given = proposal(trajectory, params)
        return rule_run.in_process(compiled, len(trajectory), rule_run.rule_values(compiled, given), BUDGET)

    assert stays(steps(5), {"items": [1, 2, 3]})
    assert not stays(steps(1000), {"items": [1, 2, 3]})  # the filter over the longest trajectory
    assert not stays(steps(5), {"items": list(range(20_000))})  # a list far longer than assumed


@pytest.mark.parametrize(
    ("require", "expected"),
    [
        ("trajectory.exists(s, s.tool == 'search')", ("pass", "")),
        ("trajectory.all(s, s.tool == 'other')", ("fail", "")),
        ("trajectory[0].args.missing == 1", ("error", "")),
        ("size(trajectory)", ("error", "result is int, not bool")),
        ("params.big > 1", ("pass", "")),
        ("now > timestamp('2000-01-01T00:00:00Z')", ("pass", "")),
    ],
)
def test_the_child_finds_what_the_process_itself_finds(
    monkeypatch: pytest.MonkeyPatch, require: str, expected: tuple[str, str]
) -> None:
    compiled = policy(("rule", require))
    given = proposal(steps(3), params={"big": 2**70})  # beyond 64 bits: encoded all the same
    in_process = outcomes(policy_evaluate(compiled, given, budget_seconds=5))["rule"]

    monkeypatch.setattr(rule_run, "IN_PROCESS_SHARE", 0.0)  # everything to the child
    in_child = outcomes(policy_evaluate(compiled, given, budget_seconds=5))["rule"]

    assert in_child[0] == in_process[0] == expected[0]
    assert expected[1] in in_child[1]
    assert expected[1] in in_process[1]


def test_a_child_that_dies_while_a_rule_runs_holds_the_action_and_is_replaced(ready_child: int) -> None:
    # given: the child is killed (out of memory, an operator) while the runaway runs
    compiled = policy(("runaway", SLIPS_THROUGH), ("after", "true"))
    killer = threading.Timer(0.15, os.kill, (ready_child, signal.SIGKILL))
    killer.start()

    # when
    decision = policy_evaluate(compiled, proposal(steps(1000)), budget_seconds=5)
    killer.join()

    # then: held, the rule named as lost, never approved; the next evaluation is answered
    assert decision.status == NEEDS_REVIEW
    lost = next(f for f in decision.findings if f["rule"] == "runaway")
    assert "ended while this rule ran" in lost["error"]
    assert "ended before this rule" in outcomes(decision)["after"][1]
    quick = policy_evaluate(compiled, proposal(steps(1000, tool="read")), budget_seconds=5)
    assert quick.status == AUTO_APPROVED
