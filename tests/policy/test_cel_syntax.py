"""The CEL parser the cost estimate reads: every expression the binding compiles in the project's
policies and tests parses, and the tree has CEL's precedence, literals and macros. Pure: no
database."""

from __future__ import annotations

import re
from pathlib import Path

import cel
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from approvals.policy.cel_syntax import (
    Binary,
    CelSyntaxError,
    Comprehension,
    Conditional,
    Has,
    Ident,
    Index,
    ListLiteral,
    Literal,
    MapLiteral,
    Message,
    Select,
    Unary,
    cel_parse,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILES = [
    ROOT / "policies" / "demo.yaml",
    ROOT / "examples" / "tau_bench_airline" / "policy.yaml",
    ROOT / "examples" / "tau_bench_airline" / "policy_trajectory_only.yaml",
]


def expressions_of(path: Path) -> list[str]:
    document = yaml.safe_load(path.read_text())
    found = []
    for action_type in document["action_types"]:
        found += [rule["require"] for rule in action_type.get("rules", [])]
        for lookup in action_type.get("lookups", []) or []:
            found += re.findall(r"\{([^{}]+)\}", lookup["url"])
        for history in action_type.get("history", []) or []:
            found += list((history.get("match") or {}).values())
    return found


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_every_expression_of_the_example_policies_parses(path: Path) -> None:
    expressions = expressions_of(path)

    assert expressions
    for expression in expressions:
        cel.compile(expression)  # the binding takes it ...
        assert cel_parse(expression) is not None  # ... and so does the parser


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("a || b && c", Binary("||", Ident("a"), Binary("&&", Ident("b"), Ident("c")))),
        ("a + b * c == d", Binary("==", Binary("+", Ident("a"), Binary("*", Ident("b"), Ident("c"))), Ident("d"))),
        ("a - b - c", Binary("-", Binary("-", Ident("a"), Ident("b")), Ident("c"))),
        ("x in [1, 2,]", Binary("in", Ident("x"), ListLiteral((Literal("int", 1), Literal("int", 2))))),
        ("a ? b : c ? d : e", Conditional(Ident("a"), Ident("b"), Conditional(Ident("c"), Ident("d"), Ident("e")))),
        ("!!a", Unary("!", Unary("!", Ident("a")))),
        ("-x.y", Unary("-", Select(Ident("x"), "y"))),
        ("--1", Literal("int", 1)),
        ("a.b[0].c", Select(Index(Select(Ident("a"), "b"), Literal("int", 0)), "c")),
        ("has(a.b.c)", Has(Select(Ident("a"), "b"), "c")),
        ("{'k': 1}", MapLiteral(((Literal("string", "k"), Literal("int", 1)),))),
        ("google.type.Money{units: 1}", Message("google.type.Money", (("units", Literal("int", 1)),))),
        ("1u + 0x1F + 2.5e1 + .5", None),
        ("'''it's'''", Literal("string", "it's")),
        (r"r'\d+'", Literal("string", r"\d+")),
        (r"'\x41\u0042\101\n'", Literal("string", "ABA\n")),
        ("b'ab'", Literal("bytes", b"ab")),
        ("a // a comment\n  + b", Binary("+", Ident("a"), Ident("b"))),
        (
            "true && null == false",
            Binary("&&", Literal("bool", True), Binary("==", Literal("null", None), Literal("bool", False))),
        ),
    ],
)
def test_the_tree_follows_cels_grammar(source: str, tree: object) -> None:
    cel.compile(source)

    parsed = cel_parse(source)

    if tree is not None:
        assert parsed == tree


def test_macros_are_comprehensions_with_their_range_variable_and_parts() -> None:
    parsed = cel_parse("trajectory.map(s, s.kind == 'message', s.content).exists(c, c.size() > 3)")

    assert isinstance(parsed, Comprehension)
    assert (parsed.macro, parsed.var) == ("exists", "c")
    inner = parsed.range
    assert isinstance(inner, Comprehension)
    assert (inner.macro, inner.var, inner.range) == ("map", "s", Ident("trajectory"))
    assert inner.transform == Select(Ident("s"), "content")


def test_a_method_named_like_a_macro_without_a_variable_is_a_call() -> None:
    parsed = cel_parse("x.all(1, true)")

    assert not isinstance(parsed, Comprehension)


@pytest.mark.parametrize("source", ["a +", "(a", "a ? b", "[1, 2", "{1: }", "a.", "if", "a $ b", "'open"])
def test_what_is_not_cel_is_a_syntax_error(source: str) -> None:
    with pytest.raises(CelSyntaxError):
        cel_parse(source)


def test_nesting_deeper_than_the_binding_takes_is_refused_not_a_crash() -> None:
    with pytest.raises(CelSyntaxError):
        cel_parse("(" * 5000 + "1" + ")" * 5000)


NAMES = st.sampled_from(["a", "b", "trajectory", "params"])
ATOMS = st.one_of(
    NAMES,
    st.integers(-5, 5).map(str),
    st.sampled_from(["'s'", '"t"', "true", "null", "1.5", "[]", "{}", "r'x'"]),
)


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(["||", "&&", "==", "<", "+", "*", "in", "-"]), inner).map(" ".join),
        st.tuples(inner, NAMES).map(lambda p: f"({p[0]}).{p[1]}"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]})[{p[1]}]"),
        st.tuples(inner, inner, inner).map(lambda p: f"({p[0]}) ? {p[1]} : {p[2]}"),
        st.tuples(inner, st.sampled_from(["all", "exists", "map", "filter"]), inner).map(
            lambda p: f"({p[0]}).{p[1]}(x, {p[2]})"
        ),
        st.tuples(inner, inner).map(lambda p: f"[{p[0]}, {p[1]}]"),
        st.tuples(inner, inner).map(lambda p: f"{{{p[0]}: {p[1]}}}"),
        inner.map(lambda e: f"!({e})"),
        inner.map(lambda e: f"size({e})"),
    )


@settings(max_examples=300, deadline=None)
@given(source=st.recursive(ATOMS, _grow, max_leaves=12))
def test_whatever_the_binding_compiles_parses(source: str) -> None:
    try:
        cel.compile(source)
    except Exception:
        return
    cel_parse(source)
