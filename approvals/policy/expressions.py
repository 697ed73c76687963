"""Checks of a CEL expression at the door: it compiles, it is not too long, and its comprehensions
do not nest so deep that it could run away. Used for rules, lookup URLs and history matches."""

from __future__ import annotations

import re
from typing import Any

import cel

# Bounds on a rule, checked at import and in the admin, so that no rule can run away: a CEL call
# cannot be interrupted once it runs (the evaluation budget can only report it afterwards, and the
# task's hard time limit ends it). Each comprehension nested in one over the trajectory multiplies
# the work by its length: two levels over 1,000 steps are a million iterations (about 1.6 s), three
# would be a billion. Real policies nest the trajectory once (tau-bench airline) and other
# comprehensions up to 11 deep, mostly over one-element lists used as variables.
MAX_EXPRESSION_CHARS = 4000
MAX_TRAJECTORY_NESTING = 2
MAX_COMPREHENSION_NESTING = 16
COMPREHENSIONS = ("all", "exists", "exists_one", "map", "filter")
# CEL string and bytes literals (raw or not, triple-quoted or not), so that their text is not read
# as code.
_CEL_STRING = re.compile(
    r"'''.*?'''" r'|""".*?"""' r"|'(?:[^'\\\n]|\\.)*'" r'|"(?:[^"\\\n]|\\.)*"',
    re.DOTALL,
)
_CALL_OR_PAREN = re.compile(r"(\btrajectory\s*)?\.\s*(?:" + "|".join(COMPREHENSIONS) + r")\s*\(|[()]")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def check_cel_expression(expression: Any) -> str | None:
    """The reason a rule expression does not compile as CEL, or None."""
    if not isinstance(expression, str) or not expression.strip():
        return "must be a non-empty CEL expression"
    if len(expression) > MAX_EXPRESSION_CHARS:
        return f"is longer than {MAX_EXPRESSION_CHARS} characters"
    try:
        cel.compile(expression)
    except Exception as exc:  # the binding raises ValueError, and others for some inputs
        return f"invalid CEL: {exc}"
    over_trajectory, nested = comprehension_nesting(expression)
    if over_trajectory > MAX_TRAJECTORY_NESTING:
        return (
            f"nests comprehensions over the trajectory {over_trajectory} deep; at most {MAX_TRAJECTORY_NESTING} "
            "levels are allowed, since each one multiplies the work by the trajectory's length"
        )
    if nested > MAX_COMPREHENSION_NESTING:
        return (
            f"nests comprehensions ({', '.join(COMPREHENSIONS)}) {nested} deep; "
            f"at most {MAX_COMPREHENSION_NESTING} levels are allowed"
        )
    return None


def comprehension_nesting(expression: str) -> tuple[int, int]:
    """How deeply a CEL expression nests comprehension macros (``list.exists(x, ...)`` inside
    another): (over the trajectory, over anything), read from its tokens. Every parenthesis is
    tracked; those opening a macro's arguments count."""
    code = _CEL_STRING.sub("''", expression)
    stack: list[tuple[int, int]] = []
    trajectory = deepest_trajectory = nested = deepest = 0
    for match in _CALL_OR_PAREN.finditer(code):
        token = match.group(0)
        if token == ")":
            if stack:
                macro, over_trajectory = stack.pop()
                nested -= macro
                trajectory -= over_trajectory
        elif token == "(":
            stack.append((0, 0))
        else:
            over_trajectory = int(match.group(1) is not None)
            stack.append((1, over_trajectory))
            nested += 1
            trajectory += over_trajectory
            deepest = max(deepest, nested)
            deepest_trajectory = max(deepest_trajectory, trajectory)
    return deepest_trajectory, deepest
