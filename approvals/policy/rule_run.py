"""Running a policy's rules within the evaluation budget: in-process, or in the supervised child.

An evaluation of at most IN_PROCESS_STEPS steps whose estimate at its own size
(approvals.policy.cel_cost: its steps, its longest list, its values) is within IN_PROCESS_SHARE of
the budget runs here, as one CEL call for every rule; the budget is checked between calls and an
overrun is reported after the fact. Any other runs in the supervised child
(approvals.policy.supervised), which is ended at the budget: a rule that would run for minutes
holds the action within the budget, named, and the evaluating process carries on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import cel

from approvals.policy import language, supervised
from approvals.policy.cel_cost import ASSUMED_ITEMS, SELECTIVITY
from approvals.policy.expressions import DEFAULT_BODY_BYTES, DEFAULT_STEPS
from approvals.policy.findings import finding as _finding
from approvals.policy.rewrite import MESSAGES, STEPS, conversation
from approvals.policy.rule_frames import json_encode
from approvals.policy.spec import RuleSpec

if TYPE_CHECKING:
    from approvals.policy.engine import CompiledPolicy, Proposal

# In-process only what could not overrun the budget unless its cost were misjudged tenfold, on a
# trajectory no longer than what the import's estimate lets a condition select at the step limit.
IN_PROCESS_SHARE = 0.1
IN_PROCESS_STEPS = int(DEFAULT_STEPS * SELECTIVITY["=="])
MAX_VALUES = DEFAULT_BODY_BYTES // 2  # what a proposal of the largest body holds at most
WHOLE_TRAJECTORY = ("trajectory", STEPS, MESSAGES)
TIME_BUDGET_EXCEEDED = "time budget exceeded"


def rule_values(policy: CompiledPolicy, proposal: Proposal, variables: frozenset[str] | None = None) -> dict:
    """The rule variables ``variables`` (default: those the policy's rules refer to), with the
    trajectory's indices and its conversation where the rules as rewritten read them."""
    values = {
        "params": proposal.params,
        "action_type": proposal.action_type,
        "confidence": proposal.confidence,
        "context": proposal.context,
        "agent": proposal.agent,
        "now": proposal.now,
        "trajectory": proposal.trajectory,
        "lookups": proposal.lookups,
        "history": proposal.history,
    }
    wanted = policy.variables if variables is None else variables
    if STEPS in wanted:
        values[STEPS] = list(range(len(proposal.trajectory)))
    if MESSAGES in wanted:
        values[MESSAGES] = conversation(proposal.trajectory)
    return {name: value for name, value in values.items() if name in wanted}


def rule_context(policy: CompiledPolicy, proposal: Proposal, variables: frozenset[str] | None = None) -> cel.Context:
    """The CEL context of ``variables`` (default: those the policy's rules refer to) with the gate's
    functions. Built once per action and shared by every rule: converting a long trajectory is the
    costly part."""
    # The gate's functions (approvals.policy.language) are given at construction, not added after.
    return cel.Context(rule_values(policy, proposal, variables), language.FUNCTIONS)


def _rule_finding(spec: RuleSpec, result: Any) -> dict:
    if not isinstance(result, bool):
        return _not_boolean(spec, type(result).__name__)
    if result:
        return _finding(spec.name, "pass", "none", "")  # a rule's message describes its failure
    extra = {"risk": spec.risk} if spec.on_fail == "risk" else {}
    return _finding(spec.name, "fail", spec.on_fail, spec.message or f"rule {spec.name} failed", **extra)


def _not_boolean(spec: RuleSpec, type_name: str) -> dict:
    return _finding(
        spec.name,
        "error",
        "review",
        spec.message or f"rule {spec.name} did not return a boolean",
        error=f"result is {type_name}, not bool",
    )


def _raised(spec: RuleSpec, error: str) -> dict:
    return _finding(spec.name, "error", "review", spec.message or f"rule {spec.name} raised an error", error=error)


def _budget(seconds: float) -> str:
    return f"{seconds * 1000:g} ms (GATE_EVALUATION_BUDGET_MS)"


def _not_evaluated(spec: RuleSpec, budget_seconds: float) -> dict:
    return _finding(
        spec.name,
        "error",
        "review",
        f"not evaluated: the evaluation ran out of its time budget, {_budget(budget_seconds)}",
        error=TIME_BUDGET_EXCEEDED,
    )


def _one_by_one(policy: CompiledPolicy, context: cel.Context, deadline: float, budget_seconds: float) -> list[dict]:
    findings: list[dict] = []
    for rule in policy.rules:
        spec = rule.spec
        if time.monotonic() > deadline:
            findings.append(_not_evaluated(spec, budget_seconds))
            continue
        try:
            result = rule.program.execute(context)
        except Exception as exc:  # any error in a rule fails closed
            findings.append(_raised(spec, f"{type(exc).__name__}: {exc}"))
            continue
        findings.append(_rule_finding(spec, result))
    return findings


def input_sizes(values: dict) -> tuple[int, int]:
    """(the longest list or map, the values in all) of the rule variables: the trajectory's steps
    and their contents included, the trajectory itself not (the estimate counts its length), nor
    its indices and messages (made from it)."""
    longest = count = 0
    stack: list[Any] = [value for name, value in values.items() if name not in WHOLE_TRAJECTORY]
    stack.extend(values.get("trajectory") or ())
    pop, push, dict_type, list_type = stack.pop, stack.extend, dict, list
    while stack:
        value = pop()
        count += 1
        kind = type(value)
        if kind is dict_type:
            if len(value) > longest:
                longest = len(value)
            push(value.values())
        elif kind is list_type:
            if len(value) > longest:
                longest = len(value)
            push(value)
    return longest, count


def cost_at_evaluation_ns(policy: CompiledPolicy, steps: int, longest: int, values: int) -> float:
    if policy.cost_at_evaluation is None:
        return float("inf")
    n, u, total = float(max(steps, 1)), float(max(longest, ASSUMED_ITEMS)), 0.0
    for coef, pn, pu, pv in policy.cost_at_evaluation:
        total += coef * n**pn * u**pu * values**pv
    return total


def in_process(policy: CompiledPolicy, steps: int, values: dict, budget_seconds: float) -> bool:
    """Whether an evaluation stays in-process: its trajectory is short enough that no condition
    can select more steps than the import's estimate assumed at the step limit (an equality one
    time in ten), and its estimate at this size is well within the budget."""
    terms = policy.cost_at_evaluation
    if terms is None or steps > IN_PROCESS_STEPS:
        return False
    share = IN_PROCESS_SHARE * budget_seconds * 1e9
    if any(pu for _, _, pu, _ in terms):
        longest, count = input_sizes(values)
        return cost_at_evaluation_ns(policy, steps, longest, count) <= share
    # No list of unknown length in the rules: only the steps' values count (a step's share, v/n).
    # At most half the body limit ("1,"): often that alone says it fits, and nothing is measured.
    if cost_at_evaluation_ns(policy, steps, 0, MAX_VALUES) <= share:
        return True
    return cost_at_evaluation_ns(policy, steps, 0, input_sizes(values)[1]) <= share


def rule_findings(policy: CompiledPolicy, proposal: Proposal, *, budget_seconds: float) -> list[dict]:
    if not policy.rules:
        return []
    if budget_seconds <= 0:
        return [_not_evaluated(rule.spec, budget_seconds) for rule in policy.rules]
    values = rule_values(policy, proposal)
    if in_process(policy, len(proposal.trajectory), values, budget_seconds):
        return _in_process_findings(policy, cel.Context(values, language.FUNCTIONS), budget_seconds)
    return _supervised_findings(policy, json_encode(values), budget_seconds)


def _in_process_findings(policy: CompiledPolicy, context: cel.Context, budget_seconds: float) -> list[dict]:
    deadline = time.monotonic() + budget_seconds
    results: Any = None
    if policy.combined is not None:
        # All rules in one call: each CEL call sets up its environment anew, which costs more
        # than a simple rule. When any rule raises, the list raises; then each rule runs on its
        # own, so that the finding names the rule and its error.
        try:
            results = policy.combined.execute(context)
        except Exception:
            results = None
    if isinstance(results, list) and len(results) == len(policy.rules):
        findings = [_rule_finding(rule.spec, result) for rule, result in zip(policy.rules, results, strict=True)]
    else:
        findings = _one_by_one(policy, context, deadline, budget_seconds)
    overrun = time.monotonic() - deadline
    if overrun > 0 and findings[-1].get("error") != TIME_BUDGET_EXCEEDED:
        # A call ran past the budget: its answers stand, but the evaluation is over budget.
        findings.append(
            _finding(
                "evaluation",
                "error",
                "review",
                f"rules took {(budget_seconds + overrun) * 1000:.0f} ms, over the evaluation budget of "
                f"{_budget(budget_seconds)}",
                error=TIME_BUDGET_EXCEEDED,
            )
        )
    return findings


def _supervised_findings(policy: CompiledPolicy, encoded: bytes, budget_seconds: float) -> list[dict]:
    sources = tuple(rule.program.source for rule in policy.rules)  # as the binding runs them (rewrite)
    outcomes = supervised.rules_run(policy.rules_key, sources, encoded, budget_seconds=budget_seconds)
    findings = []
    lost = any(outcome.kind == supervised.LOST for outcome in outcomes)
    for rule, outcome in zip(policy.rules, outcomes, strict=True):
        spec = rule.spec
        if outcome.kind == "value":
            findings.append(_rule_finding(spec, outcome.value))
        elif outcome.kind == "type":
            findings.append(_not_boolean(spec, outcome.value))
        elif outcome.kind == "error":
            findings.append(_raised(spec, outcome.value))
        elif outcome.kind == supervised.STOPPED:
            findings.append(
                _finding(
                    spec.name,
                    "error",
                    "review",
                    f"rule {spec.name} was stopped: still running when the evaluation ran out of its time budget, "
                    f"{_budget(budget_seconds)}",
                    error=TIME_BUDGET_EXCEEDED,
                )
            )
        elif outcome.kind == supervised.LOST:
            findings.append(_raised(spec, "the process running the rules ended while this rule ran"))
        elif lost:
            findings.append(_raised(spec, "not evaluated: the process running the rules ended before this rule"))
        else:
            findings.append(_not_evaluated(spec, budget_seconds))
    return findings
