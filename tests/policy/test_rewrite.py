"""Rules as the binding runs them (approvals/policy/rewrite.py: macros by index, the conversation
without tool results) decide exactly as the rules as written: every rule of the example policies on
every real proposal of the airline runs, and a table of shapes on made-up trajectories, each run
both ways through the real CEL binding."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml

from approvals.policy import language, normalize_trajectory, parse_document
from approvals.policy.rewrite import MESSAGES, STEPS, conversation, for_binding

ROOT = Path(__file__).resolve().parents[2]
AIRLINE = ROOT / "examples" / "tau_bench_airline"
NOW = datetime(2026, 12, 7, tzinfo=UTC)


@functools.cache
def program(expression: str) -> Any:
    return cel.compile(expression)


def context_of(variables: dict[str, Any]) -> Any:
    trajectory = variables.get("trajectory") or []
    values = {**variables, STEPS: list(range(len(trajectory))), MESSAGES: conversation(trajectory)}
    return cel.Context(values, language.FUNCTIONS)


def run(expression: str, context: Any) -> Any:
    try:
        return program(expression).execute(context)
    except Exception as exc:  # both ways must fail alike
        return ("error", type(exc).__name__)


def both_ways(expression: str, context: Any) -> tuple[Any, Any]:
    return run(expression, context), run(for_binding(expression), context)


def airline_cases() -> list[tuple[str, dict[str, Any]]]:
    lines = [json.loads(t) for t in (AIRLINE / "proposals.jsonl").read_text().splitlines() if t.strip()]
    return [
        (
            line["action_type"],
            {
                "params": line["params"],
                "context": line.get("context") or {},
                "agent": line.get("agent") or {"name": "replay"},
                "action_type": line["action_type"],
                "confidence": line.get("confidence"),
                "now": NOW,
                "trajectory": normalize_trajectory(line.get("trajectory")),
                "lookups": {},
                "history": {},
            },
        )
        for line in lines
    ]


@pytest.mark.parametrize("policy_file", ["policy.yaml", "policy_trajectory_only.yaml"])
def test_every_example_rule_decides_the_same_by_index_on_every_real_proposal(policy_file: str) -> None:
    specs = parse_document(yaml.safe_load((AIRLINE / policy_file).read_text()))
    cases = airline_cases()
    compared = rewritten = 0
    for spec in specs:
        rewritten += sum(for_binding(rule.require) != rule.require for rule in spec.rules)
        for action_type, variables in cases:
            if action_type != spec.name:
                continue
            context = context_of(variables)
            for rule in spec.rules:
                as_written, by_steps = both_ways(rule.require, context)
                assert by_steps == as_written, f"{spec.name}.{rule.name} on {variables['params']}"
                compared += 1
    assert rewritten >= 10  # the policies do iterate the trajectory
    assert compared > 500


TRAJECTORY = [
    {"kind": "message", "role": "user", "content": "Refund order A-1, please", "tool": "", "args": {}, "result": None},
    {
        "kind": "tool_call",
        "role": "",
        "tool": "get_order",
        "args": {"order_id": "A-1"},
        "result": {"total": 120.0, "items": [{"sku": "x", "price": 20.0}, {"sku": "y", "price": 100.0}]},
    },
    {"kind": "tool_call", "role": "", "tool": "get_order", "args": {"order_id": "A-2"}, "result": "not found"},
    {"kind": "message", "role": "assistant", "content": "I can refund 20.", "tool": "", "args": {}, "result": None},
    {"kind": "message", "role": "user", "content": "yes", "tool": "", "args": {}, "result": None},
]

SHAPES = [
    "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)",
    "trajectory.all(s, s.kind != 'tool_call' || has(s.args.order_id))",
    "trajectory.exists_one(s, s.role == 'user' && s.content == 'yes')",
    "trajectory.filter(s, s.kind == 'message').size() == 3",
    "trajectory.filter(s, s.kind == 'message')[0].content.contains('Refund')",
    "trajectory.map(s, s.tool) == ['', 'get_order', 'get_order', '', '']",
    "trajectory.map(s, s.kind == 'tool_call', s.args.order_id) == ['A-1', 'A-2']",
    # Errors inside: exists absorbs them when another step decides, all does when one is false.
    "trajectory.exists(s, s.result.total > 100.0)",
    "trajectory.all(s, s.result.total > 100.0)",
    "trajectory.exists(s, s.result.total > 1000.0)",
    # Nested: over the trajectory twice, and over a step's own list.
    "trajectory.exists(s, trajectory.exists(t, t.role == 'user' && s.tool == 'get_order'))",
    "trajectory.exists(s, s.kind == 'tool_call' && type(s.result) == map"
    " && s.result.items.exists(i, i.price == params.amount && s.args.order_id == params.order_id))",
    # The step bound again in a one-element list, the idiom rules use as a 'let'.
    "trajectory.exists(s, [s.result].exists(r, type(r) == map && r.total == 120.0))",
    # Names that only look like the step: a field, a string, a comment.
    "trajectory.exists(s, has(s.args.s) // s\n || s.tool == 's')",
    "trajectory.exists(s, {'s': s.tool}.s == 'get_order')",
    # Left as written: the step's name bound again inside, a field called trajectory.
    "trajectory.exists(s, [1].exists(s, s == 1))",
    "context.trajectory.exists(s, s == 1)",
    "trajectory.size() == 5 && trajectory[1].result.total == 120.0",
    # The gate's functions: over a step's text, and over the conversation.
    "trajectory.exists(s, s.role == 'user' && affirmative(s.content))",
    "affirmative(last_user_message(trajectory))",
    "user_said(trajectory, 'refund') && !user_said(trajectory, 'cancel')",
    "confirmed_after(trajectory, ['20']) && trajectory.size() == 5",
    "[last_user_message(trajectory)].all(last, last == 'yes')",
    "last_user_message(trajectory.filter(s, s.kind == 'message')) == 'yes'",
    "last_user_message(trajectory + []) == 'yes'",
]


@pytest.mark.parametrize("expression", SHAPES)
def test_each_shape_decides_the_same_for_binding(expression: str) -> None:
    variables = {
        "params": {"order_id": "A-1", "amount": 20.0},
        "context": {"trajectory": [1]},
        "trajectory": TRAJECTORY,
    }
    as_written, by_steps = both_ways(expression, context_of(variables))
    assert by_steps == as_written
    if "result.total" not in expression:  # those may fail on a step without a total, both ways
        assert not isinstance(as_written, tuple), f"the shape itself should evaluate: {as_written}"


def test_what_is_rewritten_and_what_is_left_as_written() -> None:
    assert for_binding("trajectory.exists(s, s.tool == 'x')") == f"{STEPS}.exists(_s0,  trajectory[_s0].tool == 'x')"
    assert for_binding("user_said(trajectory, 'x') || user_said( trajectory )") == (
        f"user_said({MESSAGES}, 'x') || user_said( {MESSAGES} )"
    )
    assert for_binding("trajectory.filter(s, s.tool == 'x')") == (
        f"{STEPS}.filter(_s0,  trajectory[_s0].tool == 'x').map(_s0, trajectory[_s0])"
    )
    for unchanged in (
        "trajectory.exists(s, [1].exists(s, s == 1))",  # s bound again inside
        "context.trajectory.exists(s, s == 1)",  # a field called trajectory
        "size(trajectory) > 2",
        "trajectory.exists(s, s.tool == 'x'",  # does not compile: left for the import's error
        "[_steps].size() > 0 && trajectory.exists(s, true)",  # the name the rewrite uses is taken
        "x.user_said(trajectory) && user_said(trajectory + [], 'x')",  # a method; not the bare list
    ):
        assert for_binding(unchanged) == unchanged
