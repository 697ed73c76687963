"""A rule's cost, read from its syntax tree at import: what cannot finish within the evaluation
budget on the longest trajectory is refused, naming the rule and the estimate; the example
policies are not. The estimates are checked against the reference binding itself. No database."""

from __future__ import annotations

import time
from pathlib import Path

import cel
import pytest
import yaml

from approvals.policy import PolicyError, parse_action_type, parse_document
from approvals.policy import cel_cost as cost
from approvals.policy.cel_syntax import cel_parse
from approvals.policy.expressions import CostLimits, check_cel_expression, comprehension_depth

ROOT = Path(__file__).resolve().parents[2]
LIMITS = CostLimits(steps=1000, budget_ms=500, body_bytes=1024 * 1024)

# The issue's rule: every step compared with every step, each comparison list built by map.
MAP_IN_MAP = "trajectory.map(a, trajectory.map(b, a.tool == b.tool)).exists(row, row.exists(same, same))"
# every step looked for among all the steps, and never found: a million comparisons
NESTED_EXISTS = "trajectory.exists(a, trajectory.exists(b, a.args == b.args && a.tool != b.tool))"
ONE_PASS = "trajectory.exists(s, s.kind == 'tool_call' && s.tool == 'get_order' && s.args.order_id == params.order_id)"


def seconds(expression: str, steps: int = 1000) -> float:
    """The estimate at ``steps`` steps of the size a step has at import."""
    return cost.estimate(cel_parse(expression), cost.expected(1000, LIMITS.body_bytes)).cost.at(steps) / 1e9


def test_the_issues_nested_map_is_refused_naming_the_estimate_and_the_budget() -> None:
    reason = check_cel_expression(MAP_IN_MAP, LIMITS, subject="rule 'same_tool_twice'")

    assert reason is not None
    assert reason.startswith("rule 'same_tool_twice' is estimated to take ")
    for words in ("on a trajectory of 1,000 steps", "GATE_MAX_TRAJECTORY_STEPS", "500 ms", "GATE_EVALUATION_BUDGET_MS"):
        assert words in reason, reason
    assert "trajectory.map(a, …) around trajectory.map(b, …)" in reason
    assert seconds(MAP_IN_MAP) > 60  # measured: 98 s; cubic in the steps


@pytest.mark.parametrize(
    "expression",
    [
        NESTED_EXISTS,
        "trajectory.all(a, trajectory.exists(b, b.args == a.args))",
        "trajectory.filter(a, trajectory.exists(b, a.content == b.content)).size() > 0",
        "[trajectory].all(t, t.exists(a, t.exists(b, a.tool == b.tool)))",  # the same list bound to a name
        "size(trajectory.map(s, s)) > 0",  # every step copied at every step: seconds on its own
        "[" + ", ".join(["1"] * 200) + "].all(i, [" + ", ".join(["1"] * 200) + "].all(j, trajectory.all(s, true)))",
        "trajectory.exists(s, s.content.matches(params.pattern))",  # a pattern compiled at every step
    ],
)
def test_rules_that_multiply_the_steps_are_refused(expression: str) -> None:
    cel.compile(expression)

    reason = check_cel_expression(expression, LIMITS)

    assert reason is not None
    assert "is estimated to take" in reason, reason


@pytest.mark.parametrize(
    "expression",
    [
        ONE_PASS,
        "trajectory.all(s, s.tool != 'get_order' || double(params.amount) <= double(s.result.total))",
        "size(trajectory.map(s, s.tool)) > 0",
        "trajectory.filter(s, s.tool == 'search').size() < 5",
        "params.items.all(i, trajectory.exists(s, s.args.sku == i.sku))",
        "trajectory.exists(m, m.role == 'user' && m.content.matches(r'(?i)\\b(yes|sure|ok)\\b'))",
        "[last_user_message(trajectory)].all(last, affirmative(last) && !negative(last))",
        "params.amount <= 100.0",
    ],
)
def test_rules_of_one_pass_are_accepted(expression: str) -> None:
    assert check_cel_expression(expression, LIMITS) is None


def test_the_estimate_is_at_the_step_limit_so_a_lower_limit_accepts_more() -> None:
    assert check_cel_expression(NESTED_EXISTS, LIMITS) is not None

    shorter = CostLimits(steps=20, budget_ms=500, body_bytes=20 * 1024)  # the same 1 KB steps
    assert check_cel_expression(NESTED_EXISTS, shorter) is None
    assert seconds(NESTED_EXISTS, 2000) > 3.5 * seconds(NESTED_EXISTS, 1000)  # quadratic in the steps


@pytest.mark.parametrize(
    "path",
    [
        "policies/demo.yaml",
        "examples/tau_bench_airline/policy.yaml",
        "examples/tau_bench_airline/policy_trajectory_only.yaml",
    ],
)
def test_the_example_policies_are_accepted(path: str) -> None:
    document = yaml.safe_load((ROOT / path).read_text())

    assert parse_document(document)


def test_a_refused_rule_refuses_its_action_type_at_its_place() -> None:
    data = {
        "name": "refund",
        "params_schema": {"type": "object"},
        "rules": [{"name": "fine", "require": ONE_PASS}, {"name": "same_tool_twice", "require": MAP_IN_MAP}],
    }

    with pytest.raises(PolicyError) as caught:
        parse_action_type(data, "refund")

    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].startswith("refund.rules[1].require: rule 'same_tool_twice' is estimated to take")


def test_comprehension_depth_is_read_from_the_tree_not_from_strings() -> None:
    assert comprehension_depth(cel_parse("trajectory.exists(s, s.tool == 'trajectory.exists(x, trajectory.all(')")) == 1
    assert comprehension_depth(cel_parse(NESTED_EXISTS)) == 2
    assert comprehension_depth(cel_parse("[1].all(a, " * 5 + "true" + ")" * 5)) == 5


def measured(expression: str, steps: int) -> float:
    trajectory = [
        {"kind": "tool_call", "tool": f"t{i % 7}", "args": {"q": str(i)}, "result": {"ok": True}, "role": "assistant"}
        | {"content": ""}
        for i in range(steps)
    ]
    program, context = cel.compile(expression), cel.Context({"trajectory": trajectory, "params": {}})
    started = time.perf_counter()
    program.execute(context)
    return time.perf_counter() - started


def test_the_estimates_rank_rules_as_the_binding_runs_them() -> None:
    # given: rules of growing cost, run by the reference binding on the same 120 steps
    rules = [ONE_PASS, "size(trajectory.map(s, s.tool)) > 0", NESTED_EXISTS, MAP_IN_MAP]
    steps = 120

    # when
    times = [measured(rule, steps) for rule in rules]
    estimates = [seconds(rule, steps) for rule in rules]

    # then: both grow in the same order, and the issue's rule is the slowest by far in both
    assert times[0] < times[2] < times[3], times
    assert estimates[0] < estimates[1] < estimates[2] < estimates[3], estimates
    assert times[3] > 10 * times[0]
    assert estimates[3] > 10 * estimates[0]


def test_at_evaluation_the_estimate_is_a_polynomial_in_the_steps_the_longest_list_and_the_values() -> None:
    one_pass = cost.at_evaluation([cel_parse(ONE_PASS)], {"type": "object"})
    nested = cost.at_evaluation([cel_parse(NESTED_EXISTS)], {"type": "object"})

    assert max(pn for _, pn, _, _ in one_pass) == 1  # one pass: linear in the steps
    assert max(pn for _, pn, _, _ in nested) == 2
    assert all(coef > 0 for coef, _, _, _ in nested)


def test_a_params_list_with_max_items_is_bounded_by_it_not_by_the_longest_list() -> None:
    listed = {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 9}}
    schema = {"type": "object", "properties": {"items": listed}}
    rule = cel_parse("params.items.all(i, params.items.exists(j, i == j))")

    bounded = cost.at_evaluation([rule], schema)
    unbounded = cost.at_evaluation([rule], {"type": "object"})

    assert all(pu == 0 for _, _, pu, _ in bounded)  # nothing depends on the input's lists
    assert max(pu for _, _, pu, _ in unbounded) == 2  # a list in a list: the longest, squared
