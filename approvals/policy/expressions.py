"""Checks of a CEL expression at the door: it compiles, it is not too long, it does not nest
comprehensions too deep, and it can finish within the evaluation budget on the longest trajectory
(approvals.policy.cel_cost). Used for rules, lookup URLs and history matches."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel

from approvals.policy import cel_cost
from approvals.policy.cel_syntax import MACROS, CelSyntaxError, Comprehension, Node, cel_parse
from approvals.policy.rewrite import for_binding

# Bounds on a rule, checked at import and in the admin. Its cost is estimated from its syntax
# tree at the step limit and refused over the evaluation budget (approvals.policy.cel_cost);
# nesting deeper than MAX_COMPREHENSION_NESTING is refused whatever it iterates (real policies
# nest up to 11 deep, mostly over one-element lists used as variables).
MAX_EXPRESSION_CHARS = 4000
MAX_COMPREHENSION_NESTING = 16
COMPREHENSIONS = tuple(sorted(MACROS))
# The engine's defaults, where Django's settings are not configured (bench, the example's replay).
DEFAULT_STEPS = 1000
DEFAULT_BUDGET_MS = 500
DEFAULT_BODY_BYTES = 1024 * 1024
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class CostLimits:
    steps: int  # the longest trajectory the gate takes (GATE_MAX_TRAJECTORY_STEPS)
    budget_ms: int  # what one evaluation's rules may take (GATE_EVALUATION_BUDGET_MS)
    body_bytes: int  # the largest proposal (GATE_MAX_BODY_BYTES): a step's share of it is its size


def cost_limits() -> CostLimits:
    """The limits in force: the gate's settings when Django is configured (so that a test's
    override counts), else the defaults. The only setting the policy package reads."""
    from django.conf import settings

    if not settings.configured:
        return CostLimits(DEFAULT_STEPS, DEFAULT_BUDGET_MS, DEFAULT_BODY_BYTES)
    return CostLimits(
        steps=getattr(settings, "GATE_MAX_TRAJECTORY_STEPS", DEFAULT_STEPS),
        budget_ms=getattr(settings, "GATE_EVALUATION_BUDGET_MS", DEFAULT_BUDGET_MS),
        body_bytes=getattr(settings, "GATE_MAX_BODY_BYTES", DEFAULT_BODY_BYTES),
    )


def check_cel_expression(
    expression: Any, limits: CostLimits | None = None, *, subject: str = "", rule: bool = False
) -> str | None:
    """The reason a CEL expression is refused (it does not compile, or it could not finish within
    the evaluation budget on the longest trajectory), or None. ``subject`` ("rule 'x'") opens the
    reason for a cost, so that the message names what is refused. A ``rule`` is estimated as the
    binding runs it (approvals.policy.rewrite), described as written."""
    if not isinstance(expression, str) or not expression.strip():
        return "must be a non-empty CEL expression"
    if len(expression) > MAX_EXPRESSION_CHARS:
        return f"is longer than {MAX_EXPRESSION_CHARS} characters"
    try:
        cel.compile(expression)
    except Exception as exc:  # the binding raises ValueError, and others for some inputs
        return f"invalid CEL: {exc}"
    try:
        tree = cel_parse(expression)
    except CelSyntaxError as exc:
        return f"cannot be read for its cost ({exc}); write it with CEL's standard syntax"
    nested = comprehension_depth(tree)
    if nested > MAX_COMPREHENSION_NESTING:
        return (
            f"nests comprehensions ({', '.join(COMPREHENSIONS)}) {nested} deep; "
            f"at most {MAX_COMPREHENSION_NESTING} levels are allowed"
        )
    limits = limits or cost_limits()
    assumptions = cel_cost.expected(limits.steps, limits.body_bytes)
    estimate = cel_cost.estimate(tree, assumptions)
    run = for_binding(expression) if rule else expression
    seconds = (estimate if run == expression else cel_cost.estimate(cel_parse(run), assumptions)).cost.at(limits.steps)
    seconds /= 1e9
    if seconds * 1000 > limits.budget_ms:
        opening = f"{subject} is" if subject else "is"
        return (
            f"{opening} estimated to take {_duration(seconds)} on a trajectory of {limits.steps:,} steps "
            f"(GATE_MAX_TRAJECTORY_STEPS), over the evaluation budget of {limits.budget_ms:,} ms "
            f"(GATE_EVALUATION_BUDGET_MS); most of it in {estimate.costliest(limits.steps)}. Each comprehension "
            "nested in another multiplies the work by its length, and map and filter copy the list they "
            "build at every element"
        )
    return None


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:,.0f} hours"
    if seconds >= 10:
        return f"{seconds:,.0f} s"
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def comprehension_depth(node: Node) -> int:
    """How deeply comprehension macros nest in a syntax tree: a macro inside another's predicate or
    transform counts, one over another's result (``l.filter(...).map(...)``) does not."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, Comprehension):
            deepest = max(deepest, depth + 1)
            stack.append((current.range, depth))
            stack += [(part, depth + 1) for part in (current.predicate, current.transform) if part is not None]
            continue
        for name in getattr(current, "__dataclass_fields__", {}):
            child = getattr(current, name)
            for item in child if isinstance(child, tuple) else (child,):
                for part in item if isinstance(item, tuple) else (item,):
                    if isinstance(part, Node):
                        stack.append((part, depth))
    return deepest
