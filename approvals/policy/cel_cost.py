"""What a CEL rule costs to run, read from its syntax tree before it ever runs.

The reference binding runs a rule without a way to stop it, and some rules cost far more than
their length suggests: a comprehension copies every element it visits, ``map`` and ``filter``
copy the list built so far at every element (quadratic in their output), ``matches`` compiles
its pattern at every call. So a rule's cost is a polynomial in the sizes of what it reads: the
trajectory's steps ``n`` and, for what the gate does not bound by count, the longest list ``u``
of the input and the values ``v`` it holds in all.

Two readings of the same tree (``Assumptions``):

- ``expected``, at import: the trajectory at the step limit, lists the gate does not bound at
  ``ASSUMED_ITEMS`` items, a step at its share of the body limit, and a condition's chance of
  holding by the textbook selectivities of a query planner (an equality holds one time in ten;
  what stands after ``&&`` runs that often; ``filter`` keeps that share). A rule whose expected
  cost is over the evaluation budget cannot finish within it and is refused.
- ``AT_EVALUATION``: the same reading at an action's own size: its steps, its longest list, its
  values. An evaluation runs in-process when that is well within the budget and its trajectory
  is at most a tenth of the step limit (there, a filter keeping every step keeps no more than the
  import's estimate let it keep at the limit); any other in a supervised child
  (approvals.policy.supervised) that is ended at the budget, since what the estimate assumes
  (how often a condition holds) is exactly what a runaway breaks.

The constants are nanoseconds measured with the reference binding by ``bench/cel_cost.py``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from approvals.policy import cel_syntax as syntax
from approvals.policy.language import FUNCTIONS
from approvals.policy.rewrite import MESSAGES, STEPS

# --- measured costs (ns) with the reference binding, bench/cel_cost.py (bench/results/cel_cost.md),
# rounded up by about half: a busy machine measures more, and an estimate errs on the costly side.
VISIT_NS = 200.0  # one element a comprehension visits
VISIT_VALUE_NS = 150.0  # per value inside that element, which it copies
APPEND_NS = 200.0  # map/filter: per element of the list built so far, copied at every element
APPEND_VALUE_NS = 500.0  # ... per value inside such an element (a map's keys are copied too)
SELECT_VALUE_NS = 150.0  # per value of a field selected (`s.result` copies the result)
INDEX_NS = 200.0  # an item of a list read by index (`trajectory[i]` copies nothing)
NODE_NS = 50.0  # a name, a literal, an operator, a cheap function
EQUAL_VALUE_NS = 300.0  # per value compared by ==, != and `in`
BYTE_NS = 0.5  # per byte of a string compared, searched, joined
MATCH_BYTE_NS = 1.0  # per byte a pattern reads
DYNAMIC_PATTERN_NS = 1_000_000.0  # compiling a pattern that is not a literal, at every call
PYTHON_CALL_NS = 2_000.0  # a call of one of the gate's functions (approvals.policy.language)
PYTHON_VALUE_NS = 500.0  # per value handed to it (a trajectory is converted at every call)
PYTHON_BYTE_NS = {"affirmative": 150.0, "negative": 150.0}  # per byte of text it reads: the
# language analysis of affirmative() and negative(); the others search text (BYTE_NS)

# --- what the estimate at import assumes -------------------------------------------------------
ASSUMED_ITEMS = 10  # a list the gate does not bound: a lookup's answer, a list in a step or params
ASSUMED_VALUES = 20  # the values of an element nothing says more of
ASSUMED_STRING_BYTES = 1024
BYTES_PER_VALUE = 20  # a step's values: its share of the body limit, at this many bytes each
SELECTIVITY = {"==": 0.1, "!=": 0.9, "in": 0.1, "<": 1 / 3, "<=": 1 / 3, ">": 1 / 3, ">=": 1 / 3}
STRING_FUNCTIONS = frozenset({"contains", "startsWith", "endsWith"})

Term = tuple[int, int, int]  # powers of n (the steps), u (the longest list), v (the values in all)


@dataclass(frozen=True)
class Poly:
    """A polynomial in n (the trajectory's steps), u (the input's longest list) and v (the values it
    holds in all), with non-negative coefficients; n may have a power of -1 (v/n: a step's share)."""

    terms: Mapping[Term, float] = field(default_factory=dict)

    @staticmethod
    def const(value: float) -> Poly:
        return Poly({(0, 0, 0): float(value)} if value else {})

    def __add__(self, other: Poly | float) -> Poly:
        if not isinstance(other, Poly):
            other = Poly.const(other)
        terms = dict(self.terms)
        for term, coef in other.terms.items():
            terms[term] = terms.get(term, 0.0) + coef
        return Poly(terms)

    def __mul__(self, other: Poly | float) -> Poly:
        if not isinstance(other, Poly):
            return Poly({t: c * other for t, c in self.terms.items()} if other else {})
        terms: dict[Term, float] = {}
        for (n1, u1, v1), c1 in self.terms.items():
            for (n2, u2, v2), c2 in other.terms.items():
                term = (n1 + n2, u1 + u2, v1 + v2)
                terms[term] = terms.get(term, 0.0) + c1 * c2
        return Poly(terms)

    __rmul__ = __mul__
    __radd__ = __add__

    def most(self, other: Poly) -> Poly:
        """At least both, for every size (the larger coefficient of each term)."""
        return Poly({t: max(self.terms.get(t, 0.0), other.terms.get(t, 0.0)) for t in {*self.terms, *other.terms}})

    def at(self, n: float, u: float = 0.0, v: float = 0.0) -> float:
        n = max(n, 1.0)
        return sum(coef * n**pn * u**pu * v**pv for (pn, pu, pv), coef in self.terms.items())

    def compiled(self) -> tuple[tuple[float, int, int, int], ...]:
        return tuple((coef, *term) for term, coef in sorted(self.terms.items()))


ZERO, ONE, NODE = Poly(), Poly.const(1), Poly.const(NODE_NS)
N = Poly({(1, 0, 0): 1.0})


@dataclass(frozen=True)
class Shape:
    """What an expression yields, as far as its cost goes."""

    kind: str  # list, map, string, scalar, unknown
    length: Poly = ZERO  # a list's or map's items, a string's bytes
    item: Shape | None = None  # a list's items, a map's values
    fields: Mapping[str, Shape] | None = None  # a map's known fields
    in_step: bool = False  # unknown, inside a step: the steps share the input's values


SCALAR = Shape("scalar")
UNKNOWN = Shape("unknown")
UNKNOWN_IN_STEP = Shape("unknown", in_step=True)


@dataclass(frozen=True)
class Assumptions:
    name: str
    unknown_items: Poly
    unknown_values: Poly
    string_bytes: Poly
    step_values: Poly
    selective: bool  # guards and filters by the planner's selectivities; else every one passes


def expected(steps: int, body_bytes: int) -> Assumptions:
    step_values = max(ASSUMED_VALUES, body_bytes // max(steps, 1) // BYTES_PER_VALUE)
    return Assumptions(
        "expected",
        unknown_items=Poly.const(ASSUMED_ITEMS),
        unknown_values=Poly.const(ASSUMED_VALUES),
        string_bytes=Poly.const(ASSUMED_STRING_BYTES),
        step_values=Poly.const(step_values),
        selective=True,
    )


# At evaluation: the same reading at this action's size: its steps, their values (a step's share
# of them, v/n), and lists the gate does not bound as long as the input's longest (u, at least
# ASSUMED_ITEMS).
AT_EVALUATION = Assumptions(
    "at evaluation",
    unknown_items=Poly({(0, 1, 0): 1.0}),
    unknown_values=Poly.const(ASSUMED_VALUES),
    string_bytes=Poly.const(ASSUMED_STRING_BYTES),
    step_values=Poly({(-1, 0, 1): 1.0}),
    selective=True,
)


def step_shape(a: Assumptions) -> Shape:
    small = Shape("string", Poly.const(16))
    return Shape(
        "map",
        Poly.const(6),
        fields={
            "kind": small,
            "tool": small,
            "role": small,
            "content": Shape("string", a.string_bytes),
            "args": UNKNOWN_IN_STEP,
            "result": UNKNOWN_IN_STEP,
        },
    )


def schema_shape(schema: Any, root: Any = None, depth: int = 0) -> Shape:
    """The shape a JSON Schema allows: a list with maxItems is that long; anything else unknown."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 20:
        return UNKNOWN
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return schema_shape(target, root, depth + 1)
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("maxItems"), int):
        return Shape("list", Poly.const(schema["maxItems"]), item=schema_shape(schema.get("items"), root, depth + 1))
    if kind == "object" and isinstance(schema.get("properties"), dict):
        fields = {name: schema_shape(sub, root, depth + 1) for name, sub in schema["properties"].items()}
        return Shape("map", Poly.const(len(fields)), fields=fields)
    if kind in ("integer", "number", "boolean", "null"):
        return SCALAR
    if kind == "string" and isinstance(schema.get("maxLength"), int):
        return Shape("string", Poly.const(schema["maxLength"]))
    return UNKNOWN


@functools.lru_cache(maxsize=512)
def pattern_ns(pattern: str) -> float:
    """What compiling a literal pattern costs, measured once per process with the binding itself
    (best of three): 6 µs for `x`, a millisecond and more for case-insensitive alternations."""
    try:
        program = cel.compile(f"''.matches({pattern!r})")
    except Exception:
        return DYNAMIC_PATTERN_NS
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        try:
            program.execute()
        except Exception:
            return NODE_NS  # an invalid pattern errors at once
        best = min(best, time.perf_counter() - started)
    return best * 1e9


@dataclass
class Estimate:
    cost: Poly  # ns
    parts: list[tuple[Poly, str, int]]  # each comprehension's own total, what it is, how deep

    def costliest(self, n: float, b: float = 0.0) -> str:
        return max(self.parts, key=lambda part: part[0].at(n, b))[1] if self.parts else "its own operations"


class _Walker:
    def __init__(self, assumptions: Assumptions, roots: Mapping[str, Shape]) -> None:
        self.a = assumptions
        self.roots = roots
        self.parts: list[tuple[Poly, str, int]] = []
        self.inside: list[str] = []

    def sel(self, chance: float) -> float:
        return chance if self.a.selective else 1.0

    def length(self, shape: Shape) -> Poly:
        return self.a.unknown_items if shape.kind == "unknown" else shape.length

    def string_bytes(self, shape: Shape) -> Poly:
        return shape.length if shape.kind == "string" else self.a.string_bytes if shape.kind == "unknown" else ONE

    def values(self, shape: Shape) -> Poly:
        """The values a copy of ``shape`` copies: itself and all it holds."""
        return ONE + self.contents(shape)

    def contents(self, shape: Shape, depth: int = 0) -> Poly:
        """The values ``shape`` holds, at every level."""
        if shape.kind == "unknown" or depth > 8:
            return self.a.step_values if shape.in_step else self.a.unknown_values
        if shape.fields is not None:
            if shape is self.roots.get("__step__"):
                return self.a.step_values
            return sum((ONE + self.contents(s, depth + 1) for s in shape.fields.values()), ZERO)
        if shape.kind in ("list", "map"):
            return shape.length * (ONE + self.contents(shape.item or UNKNOWN, depth + 1))
        return ZERO

    def items(self, shape: Shape) -> tuple[Poly, Shape]:
        """How many elements a comprehension over ``shape`` visits, and what each is."""
        if shape.kind == "map" and shape.fields is not None:
            return shape.length, Shape("string", Poly.const(16))
        if shape.kind in ("list", "map"):
            return shape.length, shape.item or UNKNOWN
        return self.a.unknown_items, UNKNOWN_IN_STEP if shape.in_step else UNKNOWN

    def walk(self, node: syntax.Node, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        """(cost in ns, shape, chance of being true)."""
        method = getattr(self, "_" + type(node).__name__.lower())
        return method(node, env)

    def _literal(self, node: syntax.Literal, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        if node.kind in ("string", "bytes"):
            return NODE, Shape("string", Poly.const(len(node.value))), 0.5
        return NODE, SCALAR, 1.0 if node.value is True else 0.0 if node.value is False else 0.5

    def _ident(self, node: syntax.Ident, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        return NODE, env.get(node.name, self.roots.get(node.name, UNKNOWN)), 0.5

    def _select(self, node: syntax.Select, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cost, shape, _ = self.walk(node.operand, env)
        if shape.fields is not None:
            found = shape.fields.get(node.field, UNKNOWN)
        elif shape.in_step:
            found = UNKNOWN_IN_STEP
        else:
            found = shape.item or UNKNOWN if shape.kind == "map" else UNKNOWN
        return cost + NODE + SELECT_VALUE_NS * self.values(found), found, 0.5

    def _has(self, node: syntax.Has, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cost, _, _ = self.walk(node.operand, env)
        return cost + NODE, SCALAR, 0.5

    def _index(self, node: syntax.Index, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cost, shape, _ = self.walk(node.operand, env)
        index_cost, _, _ = self.walk(node.index, env)
        found = shape.item or UNKNOWN if shape.kind in ("list", "map") and shape.fields is None else UNKNOWN
        if shape.in_step:
            found = UNKNOWN_IN_STEP
        if shape.fields is not None and isinstance(node.index, syntax.Literal) and isinstance(node.index.value, str):
            found = shape.fields.get(node.index.value, UNKNOWN)
        return cost + index_cost + NODE + INDEX_NS, found, 0.5

    def _unary(self, node: syntax.Unary, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cost, shape, chance = self.walk(node.operand, env)
        return cost + NODE, shape if node.op == "-" else SCALAR, 1.0 - chance

    def _conditional(self, node: syntax.Conditional, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cond, _, _ = self.walk(node.condition, env)
        then, then_shape, then_chance = self.walk(node.then, env)
        other, other_shape, other_chance = self.walk(node.otherwise, env)
        return cond + then.most(other), _merge(then_shape, other_shape), max(then_chance, other_chance)

    def _listliteral(self, node: syntax.ListLiteral, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cost, item = NODE, None
        for element in node.items:
            element_cost, shape, _ = self.walk(element, env)
            cost += element_cost + NODE
            item = shape if item is None else _merge(item, shape)
        return cost, Shape("list", Poly.const(len(node.items)), item=item or SCALAR), 0.5

    def _mapliteral(self, node: syntax.MapLiteral, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cost, fields = NODE, dict[str, Shape]()
        for key, value in node.entries:
            key_cost, _, _ = self.walk(key, env)
            value_cost, shape, _ = self.walk(value, env)
            cost += key_cost + value_cost + NODE
            fields[key.value if isinstance(key, syntax.Literal) else f"#{len(fields)}"] = shape
        return cost, Shape("map", Poly.const(len(fields)), fields=fields), 0.5

    def _message(self, node: syntax.Message, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cost = NODE
        for _, value in node.fields:
            cost += self.walk(value, env)[0] + NODE
        return cost, UNKNOWN, 0.5

    def _binary(self, node: syntax.Binary, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        left, left_shape, p = self.walk(node.left, env)
        right, right_shape, q = self.walk(node.right, env)
        if node.op == "&&":
            return left + self.sel(p) * right, SCALAR, p * q
        if node.op == "||":
            return left + self.sel(1.0 - p) * right, SCALAR, 1.0 - (1.0 - p) * (1.0 - q)
        cost = left + right + NODE
        if node.op in ("==", "!="):
            compared = self.values(left_shape).most(self.values(right_shape))
            text = self.string_bytes(left_shape).most(self.string_bytes(right_shape))
            return cost + EQUAL_VALUE_NS * compared + BYTE_NS * text, SCALAR, SELECTIVITY[node.op]
        if node.op == "in":
            if right_shape.kind == "map":
                return cost, SCALAR, SELECTIVITY["in"]
            count, item = self.items(right_shape)
            return cost + count * (NODE + EQUAL_VALUE_NS * self.values(item)), SCALAR, SELECTIVITY["in"]
        if node.op in SELECTIVITY:
            return cost, SCALAR, SELECTIVITY[node.op]
        if node.op == "+" and "list" in (left_shape.kind, right_shape.kind):
            copied = self.values(left_shape) + self.values(right_shape)
            shape = Shape(
                "list",
                self.length(left_shape) + self.length(right_shape),
                item=_merge(left_shape.item or UNKNOWN, right_shape.item or UNKNOWN),
            )
            return cost + APPEND_VALUE_NS * copied, shape, 0.5
        if node.op == "+" and "string" in (left_shape.kind, right_shape.kind):
            joined = self.string_bytes(left_shape) + self.string_bytes(right_shape)
            return cost + BYTE_NS * joined, Shape("string", joined), 0.5
        return cost, SCALAR if left_shape.kind == "scalar" else UNKNOWN, 0.5

    def _call(self, node: syntax.Call, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        cost, shapes = NODE, []
        for part in (node.target, *node.args) if node.target is not None else node.args:
            part_cost, shape, _ = self.walk(part, env)
            cost += part_cost
            shapes.append(shape)
        name = node.function
        if node.target is not None and name in STRING_FUNCTIONS:
            return cost + BYTE_NS * self.string_bytes(shapes[0]), SCALAR, 0.1
        if name == "matches" and shapes:
            subject = shapes[0]  # the target of text.matches(p), or the first argument of matches(text, p)
            pattern = node.args[-1] if node.args else None
            compile_ns = (
                pattern_ns(pattern.value)
                if isinstance(pattern, syntax.Literal) and isinstance(pattern.value, str)
                else DYNAMIC_PATTERN_NS
            )
            return cost + compile_ns + MATCH_BYTE_NS * self.string_bytes(subject), SCALAR, 0.1
        if name in FUNCTIONS and node.target is None:
            handed = sum((self.values(s) for s in shapes), ZERO)
            text = sum((self.string_bytes(s) for s in shapes if s.kind != "scalar"), ZERO)
            if any(s is self.roots.get("trajectory") for s in shapes):
                text += N * self.a.string_bytes
            cost += PYTHON_CALL_NS + PYTHON_VALUE_NS * handed + PYTHON_BYTE_NS.get(name, BYTE_NS) * text
            shape = Shape("string", self.a.string_bytes) if name == "last_user_message" else SCALAR
            return cost, shape, 0.5
        if name in ("string", "bytes") and shapes and shapes[0].kind == "string":
            return cost + BYTE_NS * shapes[0].length, shapes[0], 0.5
        if name == "dyn" and shapes:
            return cost, shapes[0], 0.5
        return cost, SCALAR if name in ("size", "int", "uint", "double", "bool", "type") else UNKNOWN, 0.5

    def _comprehension(self, node: syntax.Comprehension, env: Mapping[str, Shape]) -> tuple[Poly, Shape, float]:
        range_cost, range_shape, _ = self.walk(node.range, env)
        count, item = self.items(range_shape)
        inner = {**env, node.var: item}
        before = len(self.parts)
        self.inside.append(node.var)
        predicate, predicate_shape, chance = self.walk(node.predicate, inner)
        each = VISIT_NS + predicate
        # Visiting an element copies it: over the pass, every value the range holds, once.
        visiting = VISIT_VALUE_NS * self.contents(range_shape)
        transform_shape = None
        if node.transform is not None:
            transform, transform_shape, _ = self.walk(node.transform, inner)
            each += self.sel(chance) * transform
        self.inside.pop()
        cost = range_cost + count * each + visiting
        over = f"{node.range.name}." if isinstance(node.range, syntax.Ident) else ""
        where = f"{over}{node.macro}({node.var}, …)"
        nested = [label for _, label, depth in self.parts[before:] if depth == len(self.inside) + 1]
        if nested:
            where += " around " + ", ".join(dict.fromkeys(nested))
        if node.macro not in ("map", "filter"):
            self.parts.append((count * each + visiting, where, len(self.inside)))
            return cost, SCALAR, 0.5
        kept = count if node.macro == "map" and node.transform is None else self.sel(chance) * count
        made = {"filter": item}.get(node.macro) or transform_shape or predicate_shape
        copying = 0.5 * kept * kept * (APPEND_NS + APPEND_VALUE_NS * self.contents(made))
        self.parts.append((count * each + visiting + copying, where, len(self.inside)))
        return cost + copying, Shape("list", kept, item=made), 0.5


def _merge(one: Shape, other: Shape) -> Shape:
    if one is other:
        return one
    if one.kind != other.kind:
        return one if other.kind == "scalar" else other if one.kind == "scalar" else UNKNOWN
    item = _merge(one.item, other.item) if one.item is not None and other.item is not None else one.item or other.item
    fields = None
    if one.fields is not None and other.fields is not None:
        names = {*one.fields, *other.fields}
        fields = {k: _merge(one.fields.get(k, UNKNOWN), other.fields.get(k, UNKNOWN)) for k in names}
    return Shape(one.kind, one.length.most(other.length), item=item, fields=fields)


def roots_for(assumptions: Assumptions, params: Shape = UNKNOWN) -> dict[str, Shape]:
    step = step_shape(assumptions)
    message = Shape(
        "map",
        Poly.const(3),
        fields={
            "kind": Shape("string", Poly.const(8)),
            "role": SCALAR,
            "content": Shape("string", assumptions.string_bytes),
        },
    )
    return {
        "__step__": step,
        "trajectory": Shape("list", N, item=step),
        # what rules read once rewritten for the binding (approvals.policy.rewrite)
        STEPS: Shape("list", N, item=SCALAR),
        MESSAGES: Shape("list", N, item=message),
        "params": params,
        "action_type": Shape("string", Poly.const(100)),
        "confidence": SCALAR,
        "now": SCALAR,
        "context": UNKNOWN,
        "agent": UNKNOWN,
        "lookups": UNKNOWN,
        "history": UNKNOWN,
    }


def estimate(tree: syntax.Node, assumptions: Assumptions, params: Shape = UNKNOWN) -> Estimate:
    walker = _Walker(assumptions, roots_for(assumptions, params))
    cost, _, _ = walker.walk(tree, {})
    return Estimate(cost=cost, parts=walker.parts)


def at_evaluation(trees: Iterable[syntax.Node], params_schema: Any) -> tuple[tuple[float, int, int, int], ...]:
    """Every rule's estimate together at an action's size, (ns, power of n, of u, of v) terms."""
    params = schema_shape(params_schema)
    total = ZERO
    for tree in trees:
        total += estimate(tree, AT_EVALUATION, params).cost
    return total.compiled()
