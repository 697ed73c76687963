"""Rule insight: what each rule of a type alone decides in its recent labelled history, put to the
policy owner as questions (never applied).

Read from one bounded query (the most recent ``GATE_RULE_INSIGHT_RECENT`` labelled actions of the
type) and worked out in Python, so that PostgreSQL and the embedded SQLite give the same answer.

What holds an action, as this module judges it:

- the stored findings of its rules and the gate's checks (schema, built-in checks, lookups,
  evaluation faults): a finding holds when it failed with effect ``review`` or ``block``, or
  raised an error (fail closed). A failed ``on_fail: risk`` rule holds nothing by itself: it
  adds its ``risk`` to the action's risk;
- today's thresholds and mode, applied to the action's stored risk, amount and confidence, as
  the threshold sweep applies them (decision steps 5-6): ``risk`` (above auto_approve_max_risk,
  or at or above block_min_risk), ``amount`` (missing or above max_auto_amount) and
  ``confidence`` (missing or below min_confidence). These are judged today for every action,
  also for one a rule held before the procedure reached them, because the question is whether
  today's policy still needs a rule: an unsafe refund of 500 that only a rule held is still held
  by a max_auto_amount of 100 without that rule.

A rule (or check) *alone stops* an unsafe action, or *alone holds* a safe one, when nothing else
holds it: without that rule the action would be auto-approved. For an ``on_fail: risk`` rule that
means the risk threshold is the only thing holding the action and the risk less that rule's term
is within today's auto_approve_max_risk (and below block_min_risk); two risk rules can each be
the one without which the action goes through. The stored findings are those of the rules of the
day: a rule added since has no finding on older actions, and a removed one keeps its findings
(shown as no longer in the policy). The what-if replay gives the exact answer for a candidate
policy; this is the quick reading of the history that tells which candidate to try.

Actions whose checks fail in the same way (the same *failing profile*: the names of every rule
and check that did not pass) are decided alike by the policy; when such a group holds both safe
and unsafe actions, the labels or the rules disagree there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from approvals import policy
from approvals.evaluation.sweep import sweep_history
from approvals.gate.selectors import action_type_spec
from approvals.models import ActionType, LabelValue, Mode

HOLDING_EFFECTS = ("review", "block")
# Judged with today's policy from the stored risk, amount and confidence: what the findings of
# these say is what the policy of that day decided.
TODAY_CHECKS = frozenset({"mode", "risk", "amount", "confidence"})
THRESHOLD_NAMES = {"risk": "risk threshold", "amount": "max_auto_amount", "confidence": "min_confidence"}
# A remembered approval's finding passes; it is a reviewer's decision, not a check of the policy.
NOT_CHECKS = frozenset({"remembered_approval"})
DECISION_ORDER = {policy.AUTO_APPROVED: 0, policy.NEEDS_REVIEW: 1, policy.BLOCKED: 2}


@dataclass(frozen=True)
class LabelledAction:
    """What the insight reads of one labelled action."""

    id: str
    label: str  # safe | unsafe
    findings: list[dict[str, Any]]
    risk_score: float | None = None
    amount: float | None = None
    confidence: float | None = None


def default_recent() -> int:
    return int(settings.GATE_RULE_INSIGHT_RECENT)


def labelled_recent(action_type: ActionType, limit: int) -> list[LabelledAction]:
    """The type's most recent ``limit`` labelled, evaluated actions, newest first: one query."""
    rows = (
        sweep_history(action_type)
        .order_by("-created_at", "-id")
        .values_list("id", "ground_truth", "findings", "risk_score", "amount", "confidence")[:limit]
    )
    return [
        LabelledAction(
            id=str(pk),
            label=str(label),  # never NULL: the history is the labelled actions
            findings=findings if isinstance(findings, list) else [],
            risk_score=risk,
            amount=amount,
            confidence=confidence,
        )
        for pk, label, findings, risk, amount, confidence in rows
    ]


# --- what holds an action -------------------------------------------------------------------------


def _findings(action: LabelledAction) -> list[dict[str, Any]]:
    return [
        f
        for f in action.findings
        if isinstance(f, dict) and isinstance(f.get("rule"), str) and f["rule"] not in NOT_CHECKS
    ]


def _stored_holders(action: LabelledAction) -> dict[str, str]:
    """The stored findings that held the action (name -> effect), today's checks left out."""
    held: dict[str, str] = {}
    for f in _findings(action):
        if f["rule"] in TODAY_CHECKS:
            continue
        if f.get("outcome") == "error":
            held.setdefault(f["rule"], "review")
        elif f.get("outcome") == "fail" and f.get("effect") in HOLDING_EFFECTS and held.get(f["rule"]) != "block":
            held[f["rule"]] = f["effect"]
    return held


def _risk_holds(spec: policy.ActionTypeSpec, risk: float) -> str | None:
    """Decision step 5 under today's thresholds: block, review or None (within them)."""
    if spec.block_min_risk is not None and risk >= spec.block_min_risk:
        return "block"
    if risk > spec.auto_approve_max_risk:
        return "review"
    return None


def _threshold_holders(spec: policy.ActionTypeSpec, action: LabelledAction) -> dict[str, str]:
    """Decision steps 5-6 under today's thresholds, on the stored risk, amount and confidence."""
    held: dict[str, str] = {}
    if action.risk_score is not None and (effect := _risk_holds(spec, action.risk_score)):
        held["risk"] = effect
    if spec.min_confidence is not None and (action.confidence is None or not action.confidence >= spec.min_confidence):
        held["confidence"] = "review"
    if (
        spec.max_auto_amount is not None
        and spec.amount_path
        and (action.amount is None or action.amount > spec.max_auto_amount)
    ):
        held["amount"] = "review"
    return held


def _risk_terms(action: LabelledAction) -> dict[str, float]:
    return {
        f["rule"]: float(f.get("risk") or 0)
        for f in _findings(action)
        if f.get("outcome") == "fail" and f.get("effect") == "risk" and f["rule"] not in TODAY_CHECKS
    }


def _risk_base(action: LabelledAction, terms: dict[str, float]) -> float:
    """The base risk the action was evaluated with: the risk finding's, else its risk less the terms."""
    for f in _findings(action):
        if f["rule"] == "risk" and isinstance(f.get("base"), (int, float)):
            return float(f["base"])
    return max(0.0, (action.risk_score or 0.0) - sum(terms.values()))


def _pivotal_risk_rules(spec: policy.ActionTypeSpec, action: LabelledAction) -> list[str]:
    """The risk rules without whose term the risk would be within today's thresholds."""
    terms = _risk_terms(action)
    base = _risk_base(action, terms)
    total = base + sum(terms.values())
    return [
        name for name, term in terms.items() if term > 0 and _risk_holds(spec, round(min(1.0, total - term), 6)) is None
    ]


@dataclass(frozen=True)
class _Reading:
    holders: dict[str, str]  # name -> effect
    profile: frozenset[str]  # every rule and check that did not pass
    alone: tuple[str, ...]  # the rules and checks without which nothing would hold it

    @property
    def decision(self) -> str:
        if "block" in self.holders.values():
            return policy.BLOCKED
        return policy.NEEDS_REVIEW if self.holders else policy.AUTO_APPROVED


def _read(spec: policy.ActionTypeSpec, action: LabelledAction) -> _Reading:
    thresholds = _threshold_holders(spec, action)
    holders = {**_stored_holders(action), **thresholds}
    failed = {
        f["rule"] for f in _findings(action) if f["rule"] not in TODAY_CHECKS and f.get("outcome") in ("fail", "error")
    }
    alone: tuple[str, ...] = ()
    if len(holders) == 1:
        (only,) = holders
        alone = (only,)
        if only == "risk":
            alone += tuple(_pivotal_risk_rules(spec, action))
    return _Reading(holders=holders, profile=frozenset(failed | set(thresholds)), alone=alone)


# --- the questions ----------------------------------------------------------------------------------


def _kind(name: str, rules: dict[str, str]) -> str:
    if name in rules:
        return "rule"
    if name in THRESHOLD_NAMES:
        return "threshold"
    if name in policy.spec.RESERVED_RULE_NAMES or name.startswith("lookup:"):
        return "check"
    return "former rule"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _rule_question(name: str, kind: str, unsafe: int, safe: int, labelled: int) -> str | None:
    what = {
        "rule": f"Rule {name}",
        "threshold": THRESHOLD_NAMES.get(name, name).capitalize(),
        "check": f"The gate's check {name}",
        "former rule": f"Rule {name}, no longer in the policy,",
    }[kind]
    also = f" (and alone holds {_plural(safe, 'safe action')})" if safe else ""
    if unsafe and kind == "former rule":
        return f"{what} alone stopped {_plural(unsafe, 'unsafe action')}{also}: does a rule of today stop them?"
    if unsafe and kind == "check":
        return (
            f"{what} alone stops {_plural(unsafe, 'unsafe action')}{also}: no rule of the policy stops them. "
            "Is one missing?"
        )
    if unsafe:
        return f"{what} alone stops {_plural(unsafe, 'unsafe action')}{also}: keep it?"
    if safe and kind in ("rule", "threshold"):
        return (
            f"{what} alone holds {_plural(safe, 'safe action')} and alone stops none of the unsafe ones among "
            f"the last {labelled} labelled: is it worth the reviewers' time? Look at a longer history before "
            "loosening it: a rule's value is in the unsafe actions only it stops."
        )
    return None


def _profile_text(profile: frozenset[str]) -> str:
    return ", ".join(sorted(profile)) or "none"


def _disagreement_question(profile: frozenset[str], decision: str, safe: int, unsafe: int) -> str:
    does = {
        policy.AUTO_APPROVED: "auto-approves them all",
        policy.NEEDS_REVIEW: "holds them all for a person",
        policy.BLOCKED: "blocks them all",
    }[decision]
    fail = f"fail the same checks ({_profile_text(profile)})" if profile else "fail no rule or check"
    return (
        f"{_plural(safe, 'safe action')} and {_plural(unsafe, 'unsafe action')} {fail}, so the policy {does}: "
        "your labels or your rules disagree here. Is a label wrong, or is a rule missing that tells them apart?"
    )


def insight_from_history(spec: policy.ActionTypeSpec, history: list[LabelledAction], *, recent: int) -> dict[str, Any]:
    """The insight of one type's labelled ``history`` under its policy of today (``spec``)."""
    rules = {rule.name: rule.on_fail for rule in spec.rules}
    result: dict[str, Any] = {
        "action_type": spec.name,
        "mode": spec.mode,
        "recent": recent,
        "labelled": len(history),
        "safe": sum(1 for a in history if a.label == LabelValue.SAFE),
        "unsafe": sum(1 for a in history if a.label == LabelValue.UNSAFE),
        "rules": [],
        "disagreements": [],
        "unstopped_unsafe": [],
        "unstopped_question": None,
    }
    if spec.mode != Mode.GATE:
        return result  # a person decides every action (review), or none goes through (block)
    alone: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"unsafe": [], "safe": []})
    groups: dict[frozenset[str], dict[str, Any]] = {}
    for action in history:
        reading = _read(spec, action)
        for name in reading.alone:
            alone[name][action.label].append(action.id)
        group = groups.setdefault(reading.profile, {"decision": reading.decision, "safe": [], "unsafe": []})
        group[action.label].append(action.id)
        if action.label == LabelValue.UNSAFE and not reading.holders:
            result["unstopped_unsafe"].append(action.id)
    names = list(rules) + sorted(name for name in alone if name not in rules)
    for name in names:
        kind = _kind(name, rules)
        unsafe, safe = alone[name]["unsafe"], alone[name]["safe"]
        result["rules"].append(
            {
                "rule": name,
                "kind": kind,
                "on_fail": rules.get(name),
                "alone_stops_unsafe": unsafe,
                "alone_holds_safe": safe,
                "question": _rule_question(name, kind, len(unsafe), len(safe), len(history)),
            }
        )
    disagreements = [
        {
            "profile": sorted(profile),
            "decision": group["decision"],
            "safe": group["safe"],
            "unsafe": group["unsafe"],
            "question": _disagreement_question(profile, group["decision"], len(group["safe"]), len(group["unsafe"])),
        }
        for profile, group in groups.items()
        if group["safe"] and group["unsafe"]
    ]
    disagreements.sort(
        key=lambda d: (
            DECISION_ORDER[d["decision"]],
            -min(len(d["safe"]), len(d["unsafe"])),
            -(len(d["safe"]) + len(d["unsafe"])),
            d["profile"],
        )
    )
    result["disagreements"] = disagreements
    if unstopped := len(result["unstopped_unsafe"]):
        result["unstopped_question"] = (
            f"{_plural(unstopped, 'unsafe action')} fail no rule or check that holds, so today's policy "
            "auto-approves them: which rule would have caught them?"
        )
    return result


def rule_insight(action_type_name: str, *, recent: int | None = None) -> dict[str, Any]:
    """Per rule of the type: the unsafe actions it alone stops and the safe ones it alone holds,
    among the most recent ``recent`` (default GATE_RULE_INSIGHT_RECENT) labelled actions; the
    groups of actions failing alike with opposite labels; the unsafe ones nothing holds.

    Raises ActionType.DoesNotExist for an unknown type, ValueError for a ``recent`` below 1.
    """
    limit = default_recent() if recent is None else recent
    if limit < 1:
        raise ValueError("recent must be at least 1")
    action_type = ActionType.objects.get(name=action_type_name)
    return insight_from_history(action_type_spec(action_type), labelled_recent(action_type, limit), recent=limit)
