"""Policy tests (contract §6.2): the ``tests:`` of a type, parsed with the place of every problem and
run through the real engine (CEL included) with canned evidence. Pure: no database."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from approvals.policy import (
    PolicyError,
    PolicyTestsFailed,
    build_document,
    parse_action_type,
    parse_document,
    policy_tests_check,
    policy_tests_run,
)

LOOKED_UP = [
    {"kind": "message", "role": "user", "content": "My order A-1 arrived broken"},
    {"kind": "tool_call", "tool": "get_order", "args": {"order_id": "A-1"}, "result": '{"total": 80}'},
]

REFUND: dict[str, Any] = {
    "name": "refund",
    "params_schema": {
        "type": "object",
        "required": ["order_id", "amount"],
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    },
    "base_risk": 0.1,
    "auto_approve_max_risk": 0.3,
    "amount_path": "amount",
    "max_auto_amount": 100,
    "rules": [
        {
            "name": "order_was_looked_up",
            "require": "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)",
        }
    ],
}

# A type that judges what the gate looks up itself and counts in its own history.
ORDER_CHECKED: dict[str, Any] = {
    "name": "refund_checked",
    "params_schema": {"type": "object"},
    "lookups": [{"name": "order", "url": "https://shop.example/orders/{params.order_id}"}],
    "history": [
        {"name": "refunds_today", "window_minutes": 1440, "match": {"params.order_id": "params.order_id"}},
        {
            "name": "refunded_today",
            "window_minutes": 1440,
            "aggregate": "sum",
            "path": "params.amount",
            "match": {"params.order_id": "params.order_id"},
        },
    ],
    "rules": [
        {"name": "within_total", "require": "double(params.amount) <= double(lookups.order.total)"},
        {"name": "first_refund", "require": "history.refunds_today == 0 && history.refunded_today == 0.0"},
    ],
}


def with_tests(base: dict[str, Any], *tests: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(base), "tests": list(tests)}


def case(name: str, params: dict[str, Any], expect: str, **more: Any) -> dict[str, Any]:
    proposal = {"params": params, **{k: v for k, v in more.items() if k in ("trajectory", "context", "confidence")}}
    return {
        "name": name,
        "proposal": proposal,
        "expect": expect,
        **{k: more[k] for k in ("lookups", "history") if k in more},
    }


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_action_type(data, "refund")
    return caught.value.errors


# --- parsing ---------------------------------------------------------------------------------------


def test_tests_parse_into_the_spec_and_default_to_none() -> None:
    spec = parse_action_type(
        with_tests(REFUND, case("small", {"order_id": "A-1", "amount": 5}, "auto_approved", trajectory=LOOKED_UP))
    )

    assert parse_action_type(REFUND).tests == ()
    assert [(t.name, t.expect, t.proposal["params"]) for t in spec.tests] == [
        ("small", "auto_approved", {"order_id": "A-1", "amount": 5})
    ]


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        ({"name": "x"}, "refund.tests: must be a list"),
        (["x"], "refund.tests[0]: a test must be a mapping"),
        ([{"proposal": {"params": {}}, "expect": "blocked"}], "refund.tests[0].name: is required"),
        ([{"name": "x", "expect": "blocked"}], "refund.tests[0].proposal: must be a mapping"),
        ([{"name": "x", "proposal": {}, "expect": "blocked"}], "refund.tests[0].proposal.params: is required"),
        ([{"name": "x", "proposal": {"params": {}}, "expect": "approved"}], "refund.tests[0].expect: must be one of"),
        ([{"name": "x", "proposal": {"params": {}}}], "refund.tests[0].expect: must be one of"),
        ([{"name": "x", "proposal": {"params": {}}, "expect": "blocked", "why": 1}], "refund.tests[0].why: unknown"),
        (
            [{"name": "x", "proposal": {"params": {}, "rationale": "r"}, "expect": "blocked"}],
            "refund.tests[0].proposal.rationale: unknown field",
        ),
        (
            [{"name": "x", "proposal": {"params": {}, "trajectory": [{"kind": "shout"}]}, "expect": "blocked"}],
            "refund.tests[0].proposal.trajectory[0].kind: kind must be",
        ),
        (
            [{"name": "x", "proposal": {"params": {}, "confidence": 1.5}, "expect": "blocked"}],
            "refund.tests[0].proposal.confidence: must be a number between 0 and 1",
        ),
        (
            [{"name": "x", "proposal": {"params": {}, "context": []}, "expect": "blocked"}],
            "refund.tests[0].proposal.context: must be a mapping",
        ),
        (
            [{"name": "x", "proposal": {"params": {}, "agent": {"name": 3}}, "expect": "blocked"}],
            "refund.tests[0].proposal.agent: must be a mapping",
        ),
        (
            [{"name": "x", "proposal": {"params": {}}, "expect": "blocked", "lookups": {"order": {}}}],
            "refund.tests[0].lookups.order: the action type has no lookup 'order' (its lookups: none)",
        ),
        (
            [{"name": "x", "proposal": {"params": {}}, "expect": "blocked", "history": {"n": 1}}],
            "refund.tests[0].history.n: the action type has no history aggregate 'n'",
        ),
        (
            [
                {"name": "x", "proposal": {"params": {}}, "expect": "blocked"},
                {"name": "x", "proposal": {"params": {}}, "expect": "blocked"},
            ],
            "refund.tests[1].name: duplicate test name 'x'",
        ),
    ],
)
def test_invalid_tests_are_refused_with_their_place(tests: Any, expected: str) -> None:
    errors = errors_of({**REFUND, "tests": tests})
    assert any(expected in error for error in errors), errors


def test_canned_answers_must_name_the_types_own_lookups_and_history() -> None:
    errors = errors_of(
        with_tests(
            ORDER_CHECKED,
            case("x", {}, "blocked", lookups={"ordr": {}}, history={"refunds_today": "one"}),
        )
    )
    assert "refund.tests[0].lookups.ordr: the action type has no lookup 'ordr' (its lookups: order)" in errors
    assert "refund.tests[0].history.refunds_today: must be a number (the aggregate's value)" in errors


def test_tests_round_trip_through_the_export_format() -> None:
    document: dict[str, Any] = {
        "version": 1,
        "action_types": [
            with_tests(
                ORDER_CHECKED,
                case("answered", {"order_id": "A-1", "amount": 5}, "auto_approved", lookups={"order": {"total": 9}}),
                case("counted", {"order_id": "A-1", "amount": 5}, "needs_review", history={"refunds_today": 2}),
                {
                    "name": "openai form",
                    "proposal": {
                        "params": {"order_id": "A-1", "amount": 5},
                        "trajectory": {"format": "openai", "messages": [{"role": "user", "content": "hi"}]},
                        "context": {"session_id": "s"},
                        "confidence": 0.9,
                        "agent": {"name": "bot"},
                    },
                    "expect": "needs_review",
                },
            )
        ],
    }

    exported = build_document(parse_document(document))
    again = build_document(parse_document(yaml.safe_load(yaml.safe_dump(exported))))

    assert exported == again
    assert exported["action_types"][0]["tests"] == document["action_types"][0]["tests"]
    assert "tests" not in build_document(parse_document({"version": 1, "action_types": [REFUND]}))["action_types"][0]


# --- running ---------------------------------------------------------------------------------------


def run(data: dict[str, Any]) -> list[Any]:
    return policy_tests_run([parse_action_type(data)])


def test_each_test_gets_the_decision_of_the_real_engine() -> None:
    results = run(
        with_tests(
            REFUND,
            case("small", {"order_id": "A-1", "amount": 5}, "auto_approved", trajectory=LOOKED_UP),
            case("large", {"order_id": "A-1", "amount": 500}, "needs_review", trajectory=LOOKED_UP),
            case("never looked up", {"order_id": "A-1", "amount": 5}, "needs_review"),
            case("not a number", {"order_id": "A-1", "amount": "all"}, "blocked"),
        )
    )

    assert [(r.test.name, r.decision.status, r.passed) for r in results] == [
        ("small", "auto_approved", True),
        ("large", "needs_review", True),
        ("never looked up", "needs_review", True),
        ("not a number", "blocked", True),
    ]


def test_a_failing_test_says_what_it_expected_what_it_got_and_why() -> None:
    data = with_tests(
        REFUND,
        case("held when not looked up", {"order_id": "A-1", "amount": 5}, "auto_approved"),
        case("large refunds are held", {"order_id": "A-1", "amount": 500}, "auto_approved", trajectory=LOOKED_UP),
        case("passes", {"order_id": "A-1", "amount": 5}, "blocked", trajectory=LOOKED_UP),
    )

    with pytest.raises(PolicyTestsFailed) as caught:
        policy_tests_check([parse_action_type(data)])

    failures = caught.value.failures
    assert [f.test.name for f in failures] == ["held when not looked up", "large refunds are held", "passes"]
    assert caught.value.errors[0] == (
        "refund: test 'held when not looked up': expected auto_approved, got needs_review "
        "(order_was_looked_up fail: rule order_was_looked_up failed)"
    )
    assert "amount fail: amount 500 is above max_auto_amount 100" in caught.value.errors[1]
    # nothing failed: the thresholds it was within say why it went through
    assert "expected blocked, got auto_approved (no check failed; risk pass" in caught.value.errors[2]
    assert "amount pass: amount 5 is within max_auto_amount 100" in caught.value.errors[2]
    assert isinstance(caught.value, PolicyError)


def test_canned_lookups_stand_in_for_the_types_lookups() -> None:
    results = run(
        with_tests(
            ORDER_CHECKED,
            case("within", {"order_id": "A-1", "amount": 5}, "auto_approved", lookups={"order": {"total": 9}}),
            case("beyond", {"order_id": "A-1", "amount": 50}, "needs_review", lookups={"order": {"total": 9}}),
        )
    )
    assert [r.decision.status for r in results] == ["auto_approved", "needs_review"]
    assert [f["rule"] for f in results[1].failing_findings] == ["within_total"]


def test_a_lookup_the_test_does_not_answer_fails_as_in_the_gate_and_holds() -> None:
    # the gate never auto-approves on missing evidence: no answer is a failed lookup
    (result,) = run(with_tests(ORDER_CHECKED, case("unanswered", {"order_id": "A-1", "amount": 5}, "auto_approved")))

    assert result.decision.status == "needs_review"
    missing = result.failing_findings[0]
    assert (missing["rule"], missing["outcome"], missing["effect"]) == ("lookup:order", "error", "review")
    assert {f["rule"]: f["outcome"] for f in result.failing_findings}["within_total"] == "error"


def test_history_reads_zero_unless_the_test_sets_it() -> None:
    answered = {"order": {"total": 9}}
    results = run(
        with_tests(
            ORDER_CHECKED,
            case("first", {"order_id": "A-1", "amount": 5}, "auto_approved", lookups=answered),
            case(
                "counted",
                {"order_id": "A-1", "amount": 5},
                "needs_review",
                lookups=answered,
                history={"refunds_today": 1},
            ),
            case(
                "summed",
                {"order_id": "A-1", "amount": 5},
                "needs_review",
                lookups=answered,
                history={"refunded_today": 7.5},
            ),
        )
    )
    assert [r.decision.status for r in results] == ["auto_approved", "needs_review", "needs_review"]
    assert all(r.passed for r in results)


def test_context_confidence_and_agent_reach_the_rules() -> None:
    data = {
        "name": "escalate",
        "params_schema": {"type": "object"},
        "min_confidence": 0.8,
        "rules": [
            {"name": "in_session", "require": "has(context.session_id)"},
            {"name": "known_agent", "require": "agent.name == 'support-bot'"},
        ],
        "tests": [
            {
                "name": "all given",
                "proposal": {
                    "params": {},
                    "context": {"session_id": "s-1"},
                    "confidence": 0.9,
                    "agent": {"name": "support-bot"},
                },
                "expect": "auto_approved",
            },
            {
                "name": "another agent",
                "proposal": {"params": {}, "context": {"session_id": "s-1"}, "confidence": 0.9},
                "expect": "needs_review",
            },
            {
                "name": "unsure",
                "proposal": {"params": {}, "context": {"session_id": "s-1"}, "agent": {"name": "support-bot"}},
                "expect": "needs_review",
            },
        ],
    }
    results = run(data)
    assert [r.decision.status for r in results] == ["auto_approved", "needs_review", "needs_review"]
    assert [f["rule"] for f in results[1].failing_findings] == ["known_agent"]
    assert [f["rule"] for f in results[2].failing_findings] == ["confidence"]


def test_an_openai_trajectory_is_normalised_as_the_api_would() -> None:
    trajectory = {
        "format": "openai",
        "messages": [
            {"role": "user", "content": "Order A-1 arrived broken"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "function": {"name": "get_order", "arguments": '{"order_id": "A-1"}'}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"total": 80}'},
        ],
    }
    (result,) = run(
        with_tests(REFUND, case("openai", {"order_id": "A-1", "amount": 5}, "auto_approved", trajectory=trajectory))
    )
    assert result.passed


def test_a_document_without_tests_runs_none() -> None:
    assert policy_tests_check([parse_action_type(REFUND)]) == []
