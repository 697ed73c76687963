"""Policy tests (contract §6.2): each action type's example proposals and the decision the policy
must give them, as the policy file writes them, checked with the place of every problem. They run
through the real engine in approvals.policy.testing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from approvals.policy.evidence import HistorySpec, LookupSpec
from approvals.policy.trajectory import TrajectoryError, normalize_trajectory

# Policy tests (contract §6.2): what a test may expect, and how many a type may have.
TEST_EXPECTATIONS = ("auto_approved", "needs_review", "blocked")
MAX_TESTS = 100
MAX_TEST_NAME = 200
# A Django group's name is at most 150 characters (django.contrib.auth.models.Group.name).


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class PolicyTestSpec:
    """An example proposal and the decision the policy must give it (contract §6.2), run before the
    policy goes live (approvals.policy.testing). ``lookups``: the canned answer of each lookup the
    test answers; ``history``: the value of each history aggregate it sets (a project addition: the
    others read 0)."""

    name: str
    proposal: dict[str, Any]
    expect: str
    lookups: dict[str, Any] = field(default_factory=dict)
    history: dict[str, float] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "proposal": self.proposal}
        if self.lookups:
            data["lookups"] = self.lookups
        if self.history:
            data["history"] = self.history
        data["expect"] = self.expect
        return data


TEST_FIELDS = {f for f in PolicyTestSpec.__dataclass_fields__}
TEST_PROPOSAL_FIELDS = {"params", "trajectory", "context", "confidence", "agent"}


def _canned(
    data: Any, where: str, errors: list[str], *, what: str, known: tuple[str, ...], numbers: bool
) -> dict[str, Any]:
    """A test's canned ``lookups`` or ``history``: a mapping from the names the type declares."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.append(f"{where}: must map {what} names to {'numbers' if numbers else 'JSON answers'}")
        return {}
    for name, value in data.items():
        if name not in known:
            declared = ", ".join(known) if known else "none"
            errors.append(f"{where}.{name}: the action type has no {what} {name!r} (its {what}s: {declared})")
        elif numbers and not is_finite_number(value):
            errors.append(f"{where}.{name}: must be a number (the aggregate's value)")
    return dict(data)


def _test_proposal(data: Any, where: str, errors: list[str]) -> dict[str, Any]:
    """A test's proposal, checked as the API checks a proposal's fields (kept as written)."""
    if not isinstance(data, dict):
        errors.append(f"{where}: must be a mapping with params (and trajectory, context, confidence, agent)")
        return {}
    for key in sorted(set(data) - TEST_PROPOSAL_FIELDS):
        errors.append(f"{where}.{key}: unknown field")
    if not isinstance(data.get("params"), dict):
        errors.append(f"{where}.params: is required, a mapping")
    try:
        normalize_trajectory(data.get("trajectory"))
    except TrajectoryError as exc:
        errors.append(f"{where}.{exc.path}: {exc.message}")
    if not isinstance(data.get("context", {}), dict):
        errors.append(f"{where}.context: must be a mapping")
    confidence = data.get("confidence")
    if confidence is not None and not (is_finite_number(confidence) and 0 <= confidence <= 1):
        errors.append(f"{where}.confidence: must be a number between 0 and 1, or null")
    agent = data.get("agent", {})
    if not isinstance(agent, dict) or not isinstance(agent.get("name", ""), str):
        errors.append(f"{where}.agent: must be a mapping (its name a string)")
    return data


def parse_tests(
    data: Any,
    place: str,
    errors: list[str],
    *,
    lookups: tuple[LookupSpec, ...],
    history: tuple[HistorySpec, ...],
) -> tuple[PolicyTestSpec, ...]:
    """A type's ``tests`` (contract §6.2); problems are appended to ``errors`` with their place.
    A canned answer must name one of the type's own lookups or history aggregates."""
    if data is None:
        return ()
    if not isinstance(data, list):
        errors.append(f"{place}: must be a list")
        return ()
    if len(data) > MAX_TESTS:
        errors.append(f"{place}: has {len(data)} tests; at most {MAX_TESTS} are allowed per action type")
        return ()
    tests: list[PolicyTestSpec] = []
    names: set[str] = set()
    for index, item in enumerate(data):
        where = f"{place}[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{where}: a test must be a mapping")
            continue
        before = len(errors)
        for key in sorted(set(item) - TEST_FIELDS):
            errors.append(f"{where}.{key}: unknown field")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_TEST_NAME:
            errors.append(f"{where}.name: is required, a text of at most {MAX_TEST_NAME} characters")
        elif name in names:
            errors.append(f"{where}.name: duplicate test name {name!r}")
        names.add(str(name))
        proposal = _test_proposal(item.get("proposal"), f"{where}.proposal", errors)
        canned_lookups = _canned(
            item.get("lookups"),
            f"{where}.lookups",
            errors,
            what="lookup",
            known=tuple(s.name for s in lookups),
            numbers=False,
        )
        canned_history = _canned(
            item.get("history"),
            f"{where}.history",
            errors,
            what="history aggregate",
            known=tuple(h.name for h in history),
            numbers=True,
        )
        expect = item.get("expect")
        if expect not in TEST_EXPECTATIONS:
            errors.append(f"{where}.expect: must be one of {', '.join(TEST_EXPECTATIONS)}")
        if len(errors) == before:
            tests.append(
                PolicyTestSpec(
                    name=str(name),
                    proposal=proposal,
                    expect=str(expect),
                    lookups=canned_lookups,
                    history=canned_history,
                )
            )
    return tuple(tests)


def stored_tests(
    data: Any, *, lookups: tuple[LookupSpec, ...], history: tuple[HistorySpec, ...]
) -> tuple[PolicyTestSpec, ...]:
    """A type's tests from their stored form (validated when saved)."""
    errors: list[str] = []
    tests = parse_tests(data or None, "tests", errors, lookups=lookups, history=history)
    if errors:
        raise ValueError("; ".join(errors))
    return tests
