"""The decision procedure of contract §5, step by step, and the CEL the rules may use. Pure unit
tests: a compiled policy and a proposal in, a Decision out; no database."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from approvals.policy import (
    AUTO_APPROVED,
    BLOCKED,
    NEEDS_REVIEW,
    CompiledPolicy,
    Decision,
    PolicyError,
    Proposal,
    audit_sampled,
    compile_policy,
    evaluation_error_decision,
    normalize_trajectory,
    parse_action_type,
    policy_evaluate,
)

NOW = datetime(2024, 5, 15, 15, 0, tzinfo=UTC)

REFUND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
}

TRAJECTORY = normalize_trajectory(
    [
        {"kind": "message", "role": "user", "content": "My order A-1001 arrived broken"},
        {
            "kind": "tool_call",
            "tool": "get_order",
            "args": {"order_id": "A-1001"},
            "result": '{"total": 80, "status": "delivered", "items": [{"sku": "X-1", "qty": 2}]}',
        },
        {"kind": "tool_call", "tool": "get_customer", "args": {"customer_id": "C-19"}, "result": "C-19 (gold tier)"},
        {"kind": "message", "role": "assistant", "content": "I will refund the damaged item"},
    ]
)

PASS = "true"
FAIL = "false"
ERROR = "params.no_such_field == 1"


def policy(*, version: int = 7, **fields: Any) -> CompiledPolicy:
    """An action type as a policy file would state it, validated and compiled."""
    data = {"name": "refund", "params_schema": REFUND_SCHEMA, **fields}
    return compile_policy(parse_action_type(data), version)


def proposal(**overrides: Any) -> Proposal:
    values: dict[str, Any] = {
        "sample_key": "action-1",
        "action_type": "refund",
        "params": {"order_id": "A-1001", "amount": 42.5, "note": "damaged"},
        "confidence": 0.9,
        "context": {"ticket_id": "T-88", "opened_at": "2024-05-15T14:00:00Z"},
        "agent": {"name": "support-bot"},
        "trajectory": TRAJECTORY,
        "now": NOW,
    }
    values.update(overrides)
    return Proposal(**values)


def rule(name: str, require: str, on_fail: str = "review", risk: float = 0.0, message: str = "") -> dict[str, Any]:
    return {"name": name, "require": require, "on_fail": on_fail, "risk": risk, "message": message}


def evaluate(compiled: CompiledPolicy, given: Proposal | None = None) -> Decision:
    decision = policy_evaluate(compiled, given or proposal())
    assert_explained(decision)
    return decision


def finding(decision: Decision, name: str) -> dict[str, Any]:
    matches = [f for f in decision.findings if f["rule"] == name]
    assert len(matches) == 1, f"expected one finding {name!r} in {decision.findings}"
    return matches[0]


def rule_outcomes(decision: Decision) -> dict[str, tuple[str, str]]:
    return {f["rule"]: (f["outcome"], f["effect"]) for f in decision.findings}


def assert_explained(decision: Decision) -> None:
    """What holds for every decision: findings as the contract shapes them, and a status they explain."""
    assert decision.status in {AUTO_APPROVED, NEEDS_REVIEW, BLOCKED}
    for f in decision.findings:
        assert isinstance(f["rule"], str)
        assert f["rule"]
        assert f["outcome"] in {"pass", "fail", "error"}
        assert f["effect"] in {"none", "review", "block", "risk"}
        assert isinstance(f["message"], str)
        # effect is none for a pass, and only for a pass
        assert (f["outcome"] == "pass") == (f["effect"] == "none"), f
        # an error never blocks and never lets through: it holds
        if f["outcome"] == "error":
            assert f["effect"] == "review", f
    effects = {f["effect"] for f in decision.findings if f["outcome"] != "pass"}
    if decision.status == BLOCKED:
        assert "block" in effects, decision.findings
        assert decision.audit_flagged is False
    elif decision.status == NEEDS_REVIEW:
        assert "review" in effects, decision.findings
        assert decision.audit_flagged is False
    elif decision.remembered_approval is not None:
        # a reviewer's remembered approval covers holds (review), never blocks or errors
        assert effects <= {"risk", "review"}, decision.findings
        assert "remembered_approval" in {f["rule"] for f in decision.findings}
    else:
        assert effects <= {"risk"}, decision.findings
    if decision.risk_score is not None:
        assert 0 <= decision.risk_score <= 1


# --- 1. params fail the schema --------------------------------------------------------------------


def test_params_that_fail_the_schema_are_blocked_with_one_finding_per_violation() -> None:
    # given params with three violations: a wrong type, a negative amount and a missing field
    schema = {**REFUND_SCHEMA, "required": ["order_id", "amount", "reason"]}
    params = {"order_id": 1001, "amount": -5}

    # when
    decision = evaluate(policy(params_schema=schema), proposal(params=params))

    # then
    assert decision.status == BLOCKED
    violations = list(Draft202012Validator(schema).iter_errors(params))
    schema_findings = [f for f in decision.findings if f["rule"] == "params_schema"]
    assert len(schema_findings) == len(violations) == 3
    assert decision.findings == schema_findings
    assert all(f["outcome"] == "fail" and f["effect"] == "block" for f in schema_findings)
    assert sorted(f["path"] for f in schema_findings) == ["/", "/amount", "/order_id"]
    assert all(f["message"] for f in schema_findings)


def test_schema_violation_paths_point_into_nested_params() -> None:
    # given
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["sku"],
                    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
                },
            }
        },
    }
    params = {"items": [{"sku": "A", "qty": 0}, {"qty": 1}, {"sku": "B", "qty": 2}]}

    # when
    decision = evaluate(policy(params_schema=schema), proposal(params=params))

    # then
    assert decision.status == BLOCKED
    assert sorted(f["path"] for f in decision.findings) == ["/items/0/qty", "/items/1"]


@pytest.mark.parametrize("params", [[], "refund", None, 42, {"order_id": "A-1"}])
def test_params_that_are_not_the_schema_s_object_are_blocked(params: Any) -> None:
    decision = evaluate(policy(), proposal(params=params))

    assert decision.status == BLOCKED
    assert {f["rule"] for f in decision.findings} == {"params_schema"}


def test_schema_failure_comes_before_every_other_step() -> None:
    # given a type that would otherwise be blocked by mode and reviewed by rules
    compiled = policy(mode="review", rules=[rule("never", FAIL)])

    # when
    decision = evaluate(compiled, proposal(params={"amount": "lots"}))

    # then: blocked by the schema, and no rule was evaluated
    assert decision.status == BLOCKED
    assert {f["rule"] for f in decision.findings} == {"params_schema"}
    assert decision.risk_score is None


def test_valid_params_leave_a_passing_schema_finding() -> None:
    decision = evaluate(policy())

    assert finding(decision, "params_schema")["outcome"] == "pass"
    assert finding(decision, "params_schema")["effect"] == "none"


# --- 2. mode: block -------------------------------------------------------------------------------


def test_mode_block_blocks_even_when_everything_passes() -> None:
    # when
    decision = evaluate(policy(mode="block", rules=[rule("fine", PASS)]))

    # then
    assert decision.status == BLOCKED
    assert rule_outcomes(decision)["mode"] == ("fail", "block")


def test_mode_block_comes_before_rules() -> None:
    decision = evaluate(policy(mode="block", rules=[rule("broken", ERROR), rule("held", FAIL)]))

    assert decision.status == BLOCKED
    assert "broken" not in rule_outcomes(decision)


# --- 3. a failed block rule -----------------------------------------------------------------------


def test_failed_block_rule_blocks() -> None:
    decision = evaluate(policy(rules=[rule("too_big", FAIL, on_fail="block", message="Refund above order total")]))

    assert decision.status == BLOCKED
    assert finding(decision, "too_big") == {
        "rule": "too_big",
        "outcome": "fail",
        "effect": "block",
        "message": "Refund above order total",
    }


def test_block_rule_wins_over_review_rule_errors_and_mode_review() -> None:
    # given every reason to hold, and one to block
    compiled = policy(
        mode="review",
        rules=[rule("held", FAIL), rule("broken", ERROR), rule("blocker", FAIL, on_fail="block")],
    )

    # when
    decision = evaluate(compiled)

    # then: step 3 comes before step 4, and every rule still left its finding
    assert decision.status == BLOCKED
    outcomes = rule_outcomes(decision)
    assert outcomes["held"] == ("fail", "review")
    assert outcomes["broken"] == ("error", "review")
    assert outcomes["blocker"] == ("fail", "block")


def test_passing_block_rule_does_not_block() -> None:
    decision = evaluate(policy(rules=[rule("within_total", PASS, on_fail="block")]))

    assert decision.status == AUTO_APPROVED
    assert rule_outcomes(decision)["within_total"] == ("pass", "none")


# --- 4. needs a human -----------------------------------------------------------------------------


def test_mode_review_always_needs_a_person() -> None:
    decision = evaluate(policy(mode="review", rules=[rule("fine", PASS)]))

    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["mode"] == ("fail", "review")
    assert rule_outcomes(decision)["fine"] == ("pass", "none")


def test_failed_review_rule_needs_review() -> None:
    decision = evaluate(policy(rules=[rule("order_was_looked_up", FAIL, message="never looked up")]))

    assert decision.status == NEEDS_REVIEW
    assert finding(decision, "order_was_looked_up")["effect"] == "review"
    assert finding(decision, "order_was_looked_up")["message"] == "never looked up"


@pytest.mark.parametrize(
    "expression",
    [
        "params.no_such_field == 1",
        "trajectory[99].tool == 'get_order'",
        "1 / 0 == 0",
        "int('abc') == 1",
        "timestamp('yesterday') < now",
        "params.order_id.matches('[')",
        "confidence + 1 > 1.0",  # double + int: CEL does not coerce
    ],
)
@pytest.mark.parametrize("on_fail", ["review", "block", "risk"])
def test_rule_that_raises_fails_closed_to_needs_review(expression: str, on_fail: str) -> None:
    # given a rule that raises, whatever its on_fail (an error is neither a pass nor a fail)
    compiled = policy(rules=[rule("broken", expression, on_fail=on_fail, risk=0.2)], auto_approve_max_risk=1)

    # when
    decision = evaluate(compiled)

    # then
    assert decision.status == NEEDS_REVIEW
    broken = finding(decision, "broken")
    assert (broken["outcome"], broken["effect"]) == ("error", "review")
    assert broken["error"]


@pytest.mark.parametrize("expression", ["1", "'yes'", "null", "params", "trajectory", "params.amount", "confidence"])
def test_rule_with_a_non_boolean_result_is_an_error(expression: str) -> None:
    # when
    decision = evaluate(policy(rules=[rule("not_a_test", expression)]), proposal(confidence=None))

    # then
    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["not_a_test"] == ("error", "review")


def test_rule_error_is_held_even_with_no_risk_and_nothing_else_wrong() -> None:
    decision = evaluate(policy(rules=[rule("ok", PASS), rule("broken", ERROR)]))

    assert decision.status == NEEDS_REVIEW
    assert decision.risk_score == 0


def test_rules_left_unevaluated_by_the_time_budget_hold_the_action() -> None:
    # when no time is left before the first rule
    decision = policy_evaluate(policy(rules=[rule("a", PASS), rule("b", PASS)]), proposal(), budget_seconds=-1)

    # then
    assert_explained(decision)
    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["a"] == ("error", "review")
    assert rule_outcomes(decision)["b"] == ("error", "review")


def test_every_evaluated_rule_leaves_one_finding_in_rule_order() -> None:
    # given rules with every outcome
    rules = [
        rule("passes", PASS),
        rule("reviews", FAIL),
        rule("adds_risk", FAIL, on_fail="risk", risk=0.1),
        rule("errs", ERROR),
        rule("non_bool", "'x'"),
        rule("passes_too", "size(trajectory) == 4"),
    ]

    # when
    decision = evaluate(policy(rules=rules))

    # then
    rule_names = [r["name"] for r in rules]
    assert [f["rule"] for f in decision.findings if f["rule"] in rule_names] == rule_names
    assert [rule_outcomes(decision)[name] for name in rule_names] == [
        ("pass", "none"),
        ("fail", "review"),
        ("fail", "risk"),
        ("error", "review"),
        ("error", "review"),
        ("pass", "none"),
    ]


# --- 5. risk --------------------------------------------------------------------------------------


def test_risk_is_base_plus_every_failed_risk_rule() -> None:
    # given
    rules = [
        rule("r1", FAIL, on_fail="risk", risk=0.2),
        rule("r2", PASS, on_fail="risk", risk=0.4),
        rule("r3", FAIL, on_fail="risk", risk=0.3),
        rule("reviewed", PASS, on_fail="review", risk=0.5),
    ]

    # when
    decision = evaluate(policy(base_risk=0.1, auto_approve_max_risk=0.7, rules=rules))

    # then: only failed risk rules count
    assert decision.status == AUTO_APPROVED
    assert decision.risk_score == pytest.approx(0.6)
    assert finding(decision, "r1")["effect"] == "risk"
    assert finding(decision, "r1")["risk"] == 0.2
    assert finding(decision, "risk")["outcome"] == "pass"


def test_risk_is_clamped_at_one() -> None:
    rules = [rule(f"r{i}", FAIL, on_fail="risk", risk=0.5) for i in range(4)]

    decision = evaluate(policy(base_risk=0.8, auto_approve_max_risk=1, rules=rules))

    assert decision.risk_score == 1
    assert decision.status == AUTO_APPROVED


def test_failed_review_rule_adds_no_risk() -> None:
    decision = evaluate(policy(base_risk=0.1, rules=[rule("held", FAIL, on_fail="review", risk=0.9)]))

    assert decision.status == NEEDS_REVIEW
    assert decision.risk_score == pytest.approx(0.1)


def test_risk_equal_to_auto_approve_max_risk_is_allowed() -> None:
    # given 0.1 + 0.2, which is not exactly 0.3 in binary floating point
    compiled = policy(base_risk=0.1, auto_approve_max_risk=0.3, rules=[rule("r", FAIL, on_fail="risk", risk=0.2)])

    # when
    decision = evaluate(compiled)

    # then
    assert decision.status == AUTO_APPROVED
    assert decision.risk_score == pytest.approx(0.3)


def test_risk_above_auto_approve_max_risk_is_held() -> None:
    compiled = policy(base_risk=0.1, auto_approve_max_risk=0.3, rules=[rule("r", FAIL, on_fail="risk", risk=0.21)])

    decision = evaluate(compiled)

    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["risk"] == ("fail", "review")
    assert decision.risk_score == pytest.approx(0.31)


@pytest.mark.parametrize(("base_risk", "status"), [(0.0, AUTO_APPROVED), (0.5, AUTO_APPROVED), (0.51, NEEDS_REVIEW)])
def test_default_auto_approve_max_risk_is_one_half(base_risk: float, status: str) -> None:
    assert evaluate(policy(base_risk=base_risk)).status == status


def test_risk_equal_to_block_min_risk_is_blocked() -> None:
    # given 0.3 + 0.3 + 0.3, which is 0.8999999999999999 in floating point
    rules = [rule(f"r{i}", FAIL, on_fail="risk", risk=0.3) for i in range(3)]

    decision = evaluate(policy(block_min_risk=0.9, auto_approve_max_risk=1, rules=rules))

    assert decision.status == BLOCKED
    assert rule_outcomes(decision)["risk"] == ("fail", "block")


def test_risk_just_below_block_min_risk_is_not_blocked() -> None:
    decision = evaluate(policy(base_risk=0.89, block_min_risk=0.9, auto_approve_max_risk=1))

    assert decision.status == AUTO_APPROVED


def test_block_min_risk_blocks_before_auto_approve_max_risk_holds() -> None:
    decision = evaluate(policy(base_risk=0.8, block_min_risk=0.7, auto_approve_max_risk=0.3))

    assert decision.status == BLOCKED
    assert decision.risk_score == pytest.approx(0.8)


def test_risk_block_comes_before_confidence_and_amount() -> None:
    # given a risk block and reasons of step 6 to hold
    compiled = policy(base_risk=0.9, block_min_risk=0.9, min_confidence=0.95, amount_path="amount", max_auto_amount=1)

    # when
    decision = evaluate(compiled, proposal(confidence=None))

    # then
    assert decision.status == BLOCKED


def test_no_block_min_risk_never_blocks_on_risk() -> None:
    decision = evaluate(policy(base_risk=1.0, auto_approve_max_risk=1.0))

    assert decision.status == AUTO_APPROVED
    assert decision.risk_score == 1


# --- 6. confidence and amount ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "status"),
    [(None, NEEDS_REVIEW), (0.0, NEEDS_REVIEW), (0.79, NEEDS_REVIEW), (0.8, AUTO_APPROVED), (1.0, AUTO_APPROVED)],
)
def test_min_confidence_holds_missing_or_lower_confidence(confidence: float | None, status: str) -> None:
    # when
    decision = evaluate(policy(min_confidence=0.8), proposal(confidence=confidence))

    # then
    assert decision.status == status
    expected = ("pass", "none") if status == AUTO_APPROVED else ("fail", "review")
    assert rule_outcomes(decision)["confidence"] == expected


def test_non_finite_confidence_is_held() -> None:
    decision = evaluate(policy(min_confidence=0.8), proposal(confidence=math.nan))

    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["confidence"] == ("fail", "review")


@pytest.mark.parametrize("confidence", [None, 0.0, 0.5])
def test_without_min_confidence_confidence_does_not_matter(confidence: float | None) -> None:
    decision = evaluate(policy(), proposal(confidence=confidence))

    assert decision.status == AUTO_APPROVED
    assert "confidence" not in rule_outcomes(decision)


@pytest.mark.parametrize(
    ("amount", "status"),
    [(0, AUTO_APPROVED), (99.99, AUTO_APPROVED), (100, AUTO_APPROVED), (100.01, NEEDS_REVIEW), (10**9, NEEDS_REVIEW)],
)
def test_amount_above_max_auto_amount_is_held(amount: float, status: str) -> None:
    # when
    decision = evaluate(
        policy(amount_path="amount", max_auto_amount=100), proposal(params={"order_id": "A-1001", "amount": amount})
    )

    # then
    assert decision.status == status
    expected = ("pass", "none") if status == AUTO_APPROVED else ("fail", "review")
    assert rule_outcomes(decision)["amount"] == expected


@pytest.mark.parametrize("amount", ["50", None, True, [50], {"value": 50}, math.nan, -math.inf, math.inf])
def test_a_non_numeric_amount_is_held(amount: Any) -> None:
    # given a schema that lets the amount through
    compiled = policy(params_schema={"type": "object"}, amount_path="amount", max_auto_amount=100)

    # when
    decision = evaluate(compiled, proposal(params={"amount": amount}))

    # then
    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["amount"] == ("fail", "review")


def test_a_missing_amount_is_held() -> None:
    compiled = policy(params_schema={"type": "object"}, amount_path="refund.amount", max_auto_amount=100)

    decision = evaluate(compiled, proposal(params={"order_id": "A-1001"}))

    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["amount"] == ("fail", "review")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("refund.amount", {"refund": {"amount": 150}}),
        ("lines.1.amount", {"lines": [{"amount": 1}, {"amount": 150}]}),
        ("totals.0", {"totals": [150]}),
    ],
)
def test_amount_path_is_a_dotted_path_into_params(path: str, params: dict[str, Any]) -> None:
    compiled = policy(params_schema={"type": "object"}, amount_path=path, max_auto_amount=100)

    decision = evaluate(compiled, proposal(params=params))

    assert decision.status == NEEDS_REVIEW
    assert "150" in finding(decision, "amount")["message"]


def test_amount_path_to_a_small_nested_amount_passes() -> None:
    compiled = policy(params_schema={"type": "object"}, amount_path="lines.1.amount", max_auto_amount=100)

    decision = evaluate(compiled, proposal(params={"lines": [{"amount": 500}, {"amount": 20}]}))

    assert decision.status == AUTO_APPROVED


def test_without_max_auto_amount_the_amount_does_not_matter() -> None:
    decision = evaluate(policy(amount_path="amount"), proposal(params={"order_id": "A-1", "amount": 10**9}))

    assert decision.status == AUTO_APPROVED
    assert "amount" not in rule_outcomes(decision)


def test_confidence_and_amount_both_leave_findings_when_both_hold() -> None:
    compiled = policy(min_confidence=0.8, amount_path="amount", max_auto_amount=10)

    decision = evaluate(compiled, proposal(confidence=0.1))

    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["confidence"] == ("fail", "review")
    assert rule_outcomes(decision)["amount"] == ("fail", "review")


# --- 7. auto-approval and the audit sample --------------------------------------------------------


def test_nothing_wrong_is_auto_approved_with_the_policy_version() -> None:
    # given the contract's refund example and a trajectory that looked the order up
    compiled = policy(
        version=3,
        base_risk=0.1,
        auto_approve_max_risk=0.3,
        amount_path="amount",
        max_auto_amount=100,
        rules=[
            rule(
                "order_was_looked_up",
                "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)",
            )
        ],
    )

    # when
    decision = evaluate(compiled)

    # then
    assert decision.status == AUTO_APPROVED
    assert decision.risk_score == pytest.approx(0.1)
    assert decision.policy_version == 3
    assert rule_outcomes(decision)["order_was_looked_up"] == ("pass", "none")


def test_the_same_refund_without_the_lookup_is_held() -> None:
    compiled = policy(
        rules=[
            rule(
                "order_was_looked_up",
                "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)",
            )
        ]
    )

    decision = evaluate(compiled, proposal(params={"order_id": "B-2", "amount": 10}))

    assert decision.status == NEEDS_REVIEW


@pytest.mark.parametrize("status_policy", [{"mode": "block"}, {"mode": "review"}, {"base_risk": 0.9}])
def test_every_decision_records_the_policy_version(status_policy: dict[str, Any]) -> None:
    assert evaluate(policy(version=12, **status_policy)).policy_version == 12


def test_audit_sample_is_deterministic_per_key() -> None:
    keys = [f"action-{i}" for i in range(200)]

    first = [audit_sampled(key, 0.3) for key in keys]
    second = [audit_sampled(key, 0.3) for key in keys]

    assert first == second
    assert any(first)
    assert not all(first)


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.3, 0.5, 0.9])
def test_audit_sample_matches_the_rate_over_many_keys(rate: float) -> None:
    # given
    n = 20_000

    # when
    sampled = sum(audit_sampled(f"5b0c-{i:08d}", rate) for i in range(n))

    # then: within five standard deviations of the binomial mean
    spread = 5 * math.sqrt(n * rate * (1 - rate))
    assert abs(sampled - n * rate) < spread


def test_audit_sample_at_the_edges_of_the_rate() -> None:
    keys = [f"k{i}" for i in range(1000)]

    assert not any(audit_sampled(key, 0.0) for key in keys)
    assert all(audit_sampled(key, 1.0) for key in keys)


def test_a_higher_rate_samples_a_superset_of_keys() -> None:
    keys = [f"k{i}" for i in range(2000)]

    low = {key for key in keys if audit_sampled(key, 0.1)}
    high = {key for key in keys if audit_sampled(key, 0.4)}

    assert low <= high


def test_auto_approved_action_is_flagged_as_its_key_draws() -> None:
    compiled = policy(audit_sample_rate=0.5)
    for i in range(50):
        key = f"action-{i}"

        # when evaluated twice
        first = evaluate(compiled, proposal(sample_key=key))
        again = evaluate(compiled, proposal(sample_key=key))

        # then the same draw each time
        assert first.status == AUTO_APPROVED
        assert first.audit_flagged is again.audit_flagged is audit_sampled(key, 0.5)


def test_default_audit_rate_never_flags() -> None:
    assert not any(evaluate(policy(), proposal(sample_key=f"k{i}")).audit_flagged for i in range(100))


@pytest.mark.parametrize(
    "fields",
    [{"mode": "review"}, {"mode": "block"}, {"rules": [rule("held", FAIL)]}, {"min_confidence": 1.0}],
)
def test_only_auto_approved_actions_are_flagged_for_audit(fields: dict[str, Any]) -> None:
    decision = evaluate(policy(audit_sample_rate=1.0, **fields), proposal(confidence=0.5))

    assert decision.status != AUTO_APPROVED
    assert decision.audit_flagged is False


# --- never raises ---------------------------------------------------------------------------------


class _RaisingValidator:
    def is_valid(self, instance: Any) -> bool:
        raise RuntimeError("validator exploded")

    def iter_errors(self, instance: Any) -> Any:
        raise RuntimeError("validator exploded")


class _RaisingProgram:
    def execute(self, context: Any) -> Any:
        raise SystemError("binding fault")


def test_a_validator_that_raises_holds_the_action_instead_of_raising() -> None:
    # given a compiled policy whose validator fails
    compiled = dataclasses.replace(policy(version=5), validator=_RaisingValidator())

    # when
    decision = policy_evaluate(compiled, proposal())

    # then
    assert_explained(decision)
    assert decision.status == NEEDS_REVIEW
    assert decision.policy_version == 5
    assert decision.audit_flagged is False
    assert decision.findings == [
        {
            "rule": "evaluation",
            "outcome": "error",
            "effect": "review",
            "message": "the gate could not evaluate this action; a person must decide",
            "error": "RuntimeError: validator exploded",
        }
    ]


def test_a_program_that_raises_any_exception_is_a_rule_error() -> None:
    compiled = policy(rules=[rule("odd", PASS)])
    # evaluated one rule at a time (combined=None), so that the faulty program is the one called
    compiled = dataclasses.replace(
        compiled, combined=None, rules=(dataclasses.replace(compiled.rules[0], program=_RaisingProgram()),)
    )

    decision = evaluate(compiled)

    assert decision.status == NEEDS_REVIEW
    assert rule_outcomes(decision)["odd"] == ("error", "review")


def test_rules_in_one_call_give_the_same_findings_as_one_by_one() -> None:
    # given every outcome, an error among them (which makes the combined call fall back)
    rules = [rule("p", PASS), rule("f", "false", on_fail="risk", risk=0.2), rule("n", "1 + 1")]
    erring = [*rules, rule("e", "params.missing == 1")]
    for rule_list in (rules, erring):
        compiled = policy(rules=rule_list)

        # when
        combined = policy_evaluate(compiled, proposal())
        separate = policy_evaluate(dataclasses.replace(compiled, combined=None), proposal())

        # then
        assert combined == separate


def test_params_the_rule_engine_cannot_take_hold_the_action() -> None:
    # given values that are not JSON (the CEL binding refuses them), and a rule that reads params
    compiled = policy(params_schema={"type": "object"}, rules=[rule("r", "size(params) >= 0")])

    # when
    decision = policy_evaluate(compiled, proposal(params={"when": object(), "big": 2**200}))

    # then
    assert_explained(decision)
    assert decision.status == NEEDS_REVIEW


def test_variables_no_rule_reads_are_not_converted() -> None:
    # given: rules that read only params; a trajectory value the CEL binding could not take
    compiled = policy(params_schema={"type": "object"}, rules=[rule("r", "size(params) >= 0")])
    odd = [{"kind": "message", "tool": "", "args": {}, "result": object(), "role": "user", "content": ""}]

    # when
    decision = policy_evaluate(compiled, proposal(trajectory=odd))

    # then: the unread trajectory cost nothing and could not fail the evaluation
    assert compiled.variables == frozenset({"params"})
    assert rule_outcomes(decision)["r"] == ("pass", "none")


def test_evaluation_error_decision_from_a_message() -> None:
    decision = evaluation_error_decision("evaluation did not finish", policy_version=2)

    assert_explained(decision)
    assert decision.status == NEEDS_REVIEW
    assert decision.findings[0]["error"] == "evaluation did not finish"
    assert decision.policy_version == 2


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
STEPS = st.lists(
    st.one_of(
        st.builds(
            lambda tool, args, result: {"kind": "tool_call", "tool": tool, "args": args, "result": result},
            st.sampled_from(["get_order", "get_customer", "search"]),
            st.dictionaries(st.sampled_from(["order_id", "q"]), JSON, max_size=2),
            JSON,
        ),
        st.builds(
            lambda role, content: {"kind": "message", "role": role, "content": content},
            st.sampled_from(["user", "assistant", "system", "tool"]),
            st.text(max_size=20),
        ),
    ),
    max_size=6,
).map(normalize_trajectory)
FUZZ_POLICY = policy(
    params_schema={"type": "object"},
    base_risk=0.1,
    block_min_risk=0.95,
    min_confidence=0.5,
    amount_path="amount",
    max_auto_amount=100,
    audit_sample_rate=0.5,
    rules=[
        rule("looked_up", "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)"),
        rule("small", "double(params.amount) <= 50.0", on_fail="risk", risk=0.3),
        rule("not_legal", "!has(params.team) || params.team != 'legal'", on_fail="block"),
        rule("recent", "now - duration('1h') < now"),
    ],
)


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(st.sampled_from(["order_id", "amount", "team", "x"]), JSON, max_size=4) | JSON,
    confidence=st.none() | st.floats(min_value=0, max_value=1),
    trajectory=STEPS,
    key=st.text(max_size=12),
)
def test_policy_evaluate_never_raises_and_always_explains_itself(
    params: Any, confidence: float | None, trajectory: list[dict[str, Any]], key: str
) -> None:
    decision = policy_evaluate(
        FUZZ_POLICY, proposal(params=params, confidence=confidence, trajectory=trajectory, sample_key=key)
    )

    assert_explained(decision)
    assert decision.policy_version == 7
    if decision.status == AUTO_APPROVED:
        assert decision.audit_flagged is audit_sampled(key, 0.5)
        assert all(f["outcome"] == "pass" for f in decision.findings if f["rule"] in {"looked_up", "recent"})


# --- CEL: what rules may use ----------------------------------------------------------------------

TRUE_EXPRESSIONS = [
    # has
    "has(params.note)",
    "!has(params.coupon)",
    "has(context.ticket_id)",
    "has(trajectory[1].result.total)",
    # all / exists / exists_one
    "trajectory.all(s, s.kind == 'tool_call' || s.kind == 'message')",
    "trajectory.filter(s, s.kind == 'message').all(s, s.tool == '' && s.args == {} && s.result == null)",
    "trajectory.filter(s, s.kind == 'tool_call').all(s, s.role == 'assistant' && s.content == '')",
    "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)",
    "trajectory.exists_one(s, s.tool == 'get_order')",
    "!trajectory.exists_one(s, s.kind == 'message')",
    # map / filter / size
    "trajectory.map(s, s.kind) == ['message', 'tool_call', 'tool_call', 'message']",
    "trajectory.filter(s, s.kind == 'tool_call').map(s, s.tool) == ['get_order', 'get_customer']",
    "trajectory.map(s, s.role) == ['user', 'assistant', 'assistant', 'assistant']",
    "size(trajectory.filter(s, s.role == 'assistant')) == 3",
    "'get_customer' in trajectory.map(s, s.tool)",
    "size(trajectory) == 4",
    "size(params) == 3",
    "size(params.order_id) == 6",
    "params.order_id.size() == 6",
    "size(trajectory[1].result.items) == 1",
    # strings
    "trajectory[0].content.contains('broken')",
    "params.order_id.startsWith('A-')",
    "params.order_id.endsWith('1001')",
    "params.order_id.matches('^[A-Z]-[0-9]+$')",
    "trajectory[2].result.contains('gold')",
    "!params.note.matches('^[0-9]+$')",
    # timestamp / duration and now
    "now == timestamp('2024-05-15T15:00:00Z')",
    "now - timestamp(context.opened_at) == duration('1h')",
    "timestamp(context.opened_at) > now - duration('24h')",
    "now < timestamp('2024-05-16T00:00:00Z') && now > timestamp('2024-05-15T00:00:00Z')",
    "timestamp(context.opened_at) + duration('90m') > now",
    # indexing and the other variables
    "trajectory[1].args.order_id == params.order_id",
    "trajectory[1].result.items[0].sku == 'X-1' && trajectory[1].result.items[0].qty == 2",
    "trajectory[1].result.status == 'delivered'",
    "params['order_id'] == 'A-1001'",
    "trajectory[size(trajectory) - 1].role == 'assistant'",
    "double(params.amount) <= double(trajectory[1].result.total)",
    "params.amount < 100.0",
    "action_type == 'refund' && agent.name == 'support-bot'",
    "context.ticket_id == 'T-88'",
    "confidence != null && confidence >= 0.9",
    "type(trajectory[1].result) == map && type(trajectory[2].result) == string",
]

FALSE_EXPRESSIONS = [
    "has(params.coupon)",
    "trajectory.all(s, s.kind == 'tool_call')",
    "trajectory.exists(s, s.tool == 'issue_refund')",
    "trajectory.exists_one(s, s.kind == 'message')",
    "size(trajectory.filter(s, s.kind == 'tool_call')) > 2",
    "params.order_id.matches('^B-')",
    "params.order_id.startsWith('a-')",
    "trajectory[0].content.contains('fine')",
    "now > timestamp('2025-01-01T00:00:00Z')",
    "now - timestamp(context.opened_at) > duration('2h')",
    "confidence == null",
]


@pytest.mark.parametrize("expression", TRUE_EXPRESSIONS)
def test_cel_feature_evaluates_to_true(expression: str) -> None:
    # when
    decision = evaluate(policy(rules=[rule("feature", expression)]))

    # then
    assert rule_outcomes(decision)["feature"] == ("pass", "none"), finding(decision, "feature")
    assert decision.status == AUTO_APPROVED


@pytest.mark.parametrize("expression", FALSE_EXPRESSIONS)
def test_cel_feature_evaluates_to_false(expression: str) -> None:
    decision = evaluate(policy(rules=[rule("feature", expression)]))

    assert rule_outcomes(decision)["feature"] == ("fail", "review"), finding(decision, "feature")
    assert decision.status == NEEDS_REVIEW


@pytest.mark.parametrize(("confidence", "outcome"), [(None, "pass"), (0.0, "fail"), (0.9, "fail")])
def test_confidence_is_null_when_not_given(confidence: float | None, outcome: str) -> None:
    decision = evaluate(policy(rules=[rule("no_confidence", "confidence == null")]), proposal(confidence=confidence))

    assert rule_outcomes(decision)["no_confidence"][0] == outcome


def test_context_is_an_empty_map_when_not_given() -> None:
    decision = evaluate(
        policy(rules=[rule("empty", "size(context) == 0 && !has(context.ticket_id)")]), proposal(context={})
    )

    assert rule_outcomes(decision)["empty"] == ("pass", "none")


def test_now_is_the_evaluation_time_given() -> None:
    later = datetime(2030, 1, 1, tzinfo=UTC)
    compiled = policy(rules=[rule("future", "now >= timestamp('2030-01-01T00:00:00Z')")])

    assert rule_outcomes(evaluate(compiled, proposal(now=NOW)))["future"][0] == "fail"
    assert rule_outcomes(evaluate(compiled, proposal(now=later)))["future"][0] == "pass"


def test_an_empty_trajectory_is_an_empty_list() -> None:
    compiled = policy(
        rules=[
            rule("empty", "size(trajectory) == 0"),
            rule("vacuous_all", "trajectory.all(s, false)"),
            rule("no_exists", "!trajectory.exists(s, true)"),
        ]
    )

    decision = evaluate(compiled, proposal(trajectory=[]))

    assert decision.status == AUTO_APPROVED
    assert {rule_outcomes(decision)[name] for name in ("empty", "vacuous_all", "no_exists")} == {("pass", "none")}


def test_openai_trajectory_is_readable_by_rules() -> None:
    # given a trajectory sent as OpenAI chat messages
    steps = normalize_trajectory(
        {
            "format": "openai",
            "messages": [
                {"role": "system", "content": "You are a support agent"},
                {"role": "user", "content": "Refund A-1001"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_order", "arguments": '{"order_id": "A-1001"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": '{"total": 80}'},
            ],
        }
    )
    compiled = policy(
        rules=[
            rule("looked_up", "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)"),
            rule("total_known", "trajectory.exists(s, s.tool == 'get_order' && s.result.total == 80)"),
            rule("system_kept", "trajectory[0].role == 'system'"),
        ]
    )

    # when
    decision = evaluate(compiled, proposal(trajectory=steps))

    # then
    assert decision.status == AUTO_APPROVED
    assert {rule_outcomes(decision)[n] for n in ("looked_up", "total_known", "system_kept")} == {("pass", "none")}


# --- steps 5-6 reached (threshold sweeps) and remembered approvals (contract §5, last paragraph) ----


@pytest.mark.parametrize(
    ("fields", "given", "reached", "status"),
    [
        ({}, {}, True, AUTO_APPROVED),
        ({"mode": "block"}, {}, False, BLOCKED),
        ({"mode": "review"}, {}, False, NEEDS_REVIEW),
        ({"rules": [rule("r", FAIL)]}, {}, False, NEEDS_REVIEW),
        ({"rules": [rule("r", ERROR)]}, {}, False, NEEDS_REVIEW),
        ({"rules": [rule("r", FAIL, on_fail="block")]}, {}, False, BLOCKED),
        ({"rules": [rule("r", FAIL, on_fail="risk", risk=0.6)]}, {}, True, NEEDS_REVIEW),
        ({"base_risk": 0.9, "block_min_risk": 0.8}, {}, True, BLOCKED),
        ({"min_confidence": 0.95}, {}, True, NEEDS_REVIEW),
        ({"amount_path": "amount", "max_auto_amount": 10}, {}, True, NEEDS_REVIEW),
        ({}, {"params": {"order_id": 5}}, False, BLOCKED),
    ],
)
def test_reached_thresholds_says_whether_steps_5_and_6_decided(
    fields: dict[str, Any], given: dict[str, Any], reached: bool, status: str
) -> None:
    decision = evaluate(policy(**fields), proposal(**given))
    assert (decision.reached_thresholds, decision.status) == (reached, status)


def remembered(*failed: str, ident: int = 1) -> dict[str, Any]:
    return {"id": ident, "failed": list(failed), "by": "lead", "expires_at": "2024-05-15T16:00:00+00:00"}


def test_a_remembered_approval_lets_through_a_hold_it_covers() -> None:
    compiled = policy(rules=[rule("asked", FAIL), rule("looked_up", FAIL)], min_confidence=0.95)
    decision = evaluate(compiled, proposal(remembered=(remembered("asked", "looked_up", "confidence"),)))
    assert decision.status == AUTO_APPROVED
    assert decision.remembered_approval == 1
    assert decision.audit_flagged is False
    cover = finding(decision, "remembered_approval")
    assert cover["outcome"] == "pass"
    assert cover["remembered_approval"] == 1
    assert "lead" in cover["message"]
    # the checks it failed are still on record
    assert rule_outcomes(decision)["asked"] == ("fail", "review")


def test_a_remembered_approval_covers_only_a_subset_of_what_it_accepted() -> None:
    compiled = policy(rules=[rule("asked", FAIL), rule("looked_up", FAIL)])
    decision = evaluate(compiled, proposal(remembered=(remembered("asked"), remembered("looked_up", ident=2))))
    assert decision.status == NEEDS_REVIEW
    assert decision.remembered_approval is None
    assert "remembered_approval" not in rule_outcomes(decision)


@pytest.mark.parametrize(
    "fields",
    [
        {"rules": [rule("r", FAIL, on_fail="block")]},
        {"mode": "block"},
        {"base_risk": 0.9, "block_min_risk": 0.8},
    ],
)
def test_a_remembered_approval_never_lets_through_what_blocks(fields: dict[str, Any]) -> None:
    everything = remembered("r", "mode", "risk", "params_schema")
    decision = evaluate(policy(**fields), proposal(remembered=(everything,)))
    assert decision.status == BLOCKED


def test_a_remembered_approval_never_covers_an_error() -> None:
    compiled = policy(rules=[rule("r", ERROR)])
    decision = evaluate(compiled, proposal(remembered=(remembered("r", "evaluation"),)))
    assert decision.status == NEEDS_REVIEW
    assert decision.remembered_approval is None


def test_remembered_approval_is_a_reserved_rule_name() -> None:
    with pytest.raises(PolicyError):
        policy(rules=[rule("remembered_approval", PASS)])
