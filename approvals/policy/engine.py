"""The decision procedure of contract §5, as plain Python: a compiled policy and a proposal in,
a Decision out. No ORM, no HTTP, and no exception escapes ``policy_evaluate``: any fault inside
it holds the action for a human.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cel
import jsonschema_rs

from approvals.policy import cel_cost, supervised
from approvals.policy.builtins import builtin_findings
from approvals.policy.cel_syntax import CelSyntaxError, cel_parse
from approvals.policy.evidence import UrlTemplate, compile_url, value_at
from approvals.policy.findings import finding as _finding
from approvals.policy.rewrite import MESSAGES, STEPS, for_binding
from approvals.policy.rule_run import rule_context as rule_context
from approvals.policy.rule_run import rule_findings
from approvals.policy.spec import ActionTypeSpec, RuleSpec

# Wall-clock budget of one evaluation's rules (approvals.policy.rule_run): past it, what is left
# unevaluated is an error, and a rule still running in the supervised child is stopped (held).
DEFAULT_TIME_BUDGET_SECONDS = 0.5
# Checked before any rule runs, so that no single CEL call can be handed an unbounded input.
MAX_TRAJECTORY_STEPS = 1000
MAX_TRAJECTORY_BYTES = 1024 * 1024

RULE_VARIABLES = frozenset(
    {"params", "action_type", "confidence", "context", "agent", "now", "trajectory", "lookups", "history"}
)
# What a lookup URL or a history match may read: the proposal, never another lookup's answer.
PROPOSAL_VARIABLES = RULE_VARIABLES - {"lookups", "history"}

AUTO_APPROVED = "auto_approved"
NEEDS_REVIEW = "needs_review"
BLOCKED = "blocked"


@dataclass(frozen=True)
class CompiledRule:
    spec: RuleSpec
    program: Any  # cel.Program


@dataclass(frozen=True)
class CompiledPolicy:
    spec: ActionTypeSpec
    version: int
    validator: jsonschema_rs.Draft202012Validator
    rules: tuple[CompiledRule, ...]
    # The rule variables any rule refers to: only those are converted for CEL, which costs
    # microseconds per value (a long trajectory dominates an evaluation).
    variables: frozenset[str] = frozenset(RULE_VARIABLES)
    # Every rule as one list expression (cel.Program), evaluated in a single call; None: one by one.
    combined: Any = None
    # Each lookup's URL template, compiled (approvals.policy.evidence.UrlTemplate), in lookups order.
    lookup_urls: tuple[UrlTemplate, ...] = ()
    # Each history aggregate's match expressions, compiled: ({stored path: cel.Program}, ...).
    history_matches: tuple[dict[str, Any], ...] = ()
    # The proposal variables the lookup URLs and history matches refer to.
    evidence_variables: frozenset[str] = frozenset()
    # Every rule's estimate at an action's size, (ns, power of n, of u, of v) terms
    # (approvals.policy.cel_cost): part of what sends an evaluation to the supervised child; None:
    # always the child.
    cost_at_evaluation: tuple[tuple[float, int, int, int], ...] | None = None
    # What names the rules to the supervised child (approvals.policy.supervised.policy_key).
    rules_key: str = ""


@dataclass(frozen=True)
class Proposal:
    """What the engine needs of a proposed action, already normalised."""

    sample_key: str  # stable per action: the audit sample is drawn from it
    action_type: str
    params: Any
    confidence: float | None
    context: dict
    agent: dict
    trajectory: list[dict]
    now: datetime
    # Built-in check input, found by the caller: an identical proposal of the same agent refused
    # in the last 24 hours ({"id", "status"}), or None.
    refused_repeat_of: dict | None = None
    # Reviewers' remembered approvals that may cover this proposal (same agent, type and session,
    # still active), found by the caller: ({"id", "failed": [check names], "by", "expires_at"}, ...).
    remembered: tuple[dict, ...] = ()
    # Evidence the caller gathered (contract §6.1): each lookup's parsed answer (None when it
    # failed), each history aggregate's value, the findings of those that failed (errors: held),
    # and an action of this agent with the same effect already approved ({"id", "status"}) or None.
    lookups: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    evidence_findings: tuple[dict, ...] = ()
    executed_repeat_of: dict | None = None


@dataclass(frozen=True)
class Decision:
    status: str
    risk_score: float | None
    findings: list[dict] = field(default_factory=list)
    audit_flagged: bool = False
    policy_version: int | None = None
    # Steps 1-4 neither blocked nor held it, so the thresholds of steps 5-6 decided (for sweeps).
    reached_thresholds: bool = False
    # The remembered approval that let it through instead of holding it (its id), if any.
    remembered_approval: Any = None


def compile_policy(spec: ActionTypeSpec, version: int) -> CompiledPolicy:
    """Compile once per policy version: the schema validator and every rule's CEL program."""
    # Each rule as the binding runs it cheaply (approvals.policy.rewrite).
    texts = [for_binding(rule.require) for rule in spec.rules]
    rules = tuple(
        CompiledRule(spec=rule, program=cel.compile(text)) for rule, text in zip(spec.rules, texts, strict=True)
    )
    referenced = {name for rule in rules for name in rule.program.variables()}
    combined = cel.compile("[" + ", ".join(f"({text}\n)" for text in texts) + "]") if rules else None
    lookup_urls = tuple(compile_url(lookup.url) for lookup in spec.lookups)
    history_matches = tuple({stored: cel.compile(text) for stored, text in h.match.items()} for h in spec.history)
    programs = [p for url in lookup_urls for p in url.programs()] + [p for m in history_matches for p in m.values()]
    try:
        cost_at_evaluation = cel_cost.at_evaluation([cel_parse(text) for text in texts], spec.params_schema)
    except CelSyntaxError:  # a rule stored before its syntax was read: always in the child
        cost_at_evaluation = None
    return CompiledPolicy(
        spec=spec,
        version=version,
        validator=params_validator(spec.params_schema),
        rules=rules,
        variables=frozenset((RULE_VARIABLES | {STEPS, MESSAGES}) & referenced),
        combined=combined,
        lookup_urls=lookup_urls,
        history_matches=history_matches,
        evidence_variables=frozenset(PROPOSAL_VARIABLES & {name for p in programs for name in p.variables()}),
        cost_at_evaluation=cost_at_evaluation,
        rules_key=supervised.policy_key(tuple(texts)),
    )


def params_validator(schema: dict) -> jsonschema_rs.Draft202012Validator:
    """The compiled (Rust) validator of a params schema: about 60 times faster than the Python one.
    Offline: a remote $ref is an error, never a request."""
    return jsonschema_rs.Draft202012Validator(schema, offline=True)


def schema_findings(policy: CompiledPolicy, params: Any) -> list[dict]:
    if policy.validator.is_valid(params):
        return [_finding("params_schema", "pass", "none", "params match the action type's schema")]
    errors = sorted(policy.validator.iter_errors(params), key=lambda e: [str(p) for p in e.instance_path])
    if not errors:
        return [_finding("params_schema", "pass", "none", "params match the action type's schema")]
    return [
        _finding(
            "params_schema",
            "fail",
            "block",
            error.message,
            path="/" + "/".join(str(part) for part in error.instance_path),
        )
        for error in errors
    ]


def limit_findings(proposal: Proposal) -> list[dict]:
    """Inputs too large to evaluate within bounds: held, with the reason, before any rule runs.

    The number of steps bounds the work (converting a trajectory for CEL costs per value, and a
    rule's comprehensions run over steps). Byte size is bounded where the input arrives: the API's
    body limit, and the replay command's line limit (MAX_TRAJECTORY_BYTES).
    """
    steps = len(proposal.trajectory)
    if steps > MAX_TRAJECTORY_STEPS:
        return [
            _finding(
                "evaluation",
                "error",
                "review",
                f"trajectory has {steps} steps; rules run on at most {MAX_TRAJECTORY_STEPS}",
                error="trajectory too long",
            )
        ]
    return []


def amount_at(params: Any, path: str) -> Any:
    """The value at a dotted path of params (list indexes as digits), or None."""
    return value_at(params, path)


def failed_checks(findings: list[dict]) -> list[str]:
    """The names of the checks a decision did not pass, as a remembered approval stores them."""
    return sorted({f["rule"] for f in findings if f["outcome"] != "pass"})


def remembered_cover(findings: list[dict], remembered: tuple[dict, ...]) -> dict | None:
    """The first remembered approval that accepted every check these findings fail, if any.

    Never for a decision with an error finding (a rule that raised, an evaluation over budget):
    a fault of the gate is never approved in advance. Callers apply it only to a hold, so nothing
    that blocks is ever let through.
    """
    if not remembered or any(f["outcome"] == "error" for f in findings):
        return None
    failed = set(failed_checks(findings))
    for candidate in remembered:
        if failed <= set(candidate["failed"]):
            return candidate
    return None


def remembers_approvals(*, mode: str, approvals_required: int) -> bool:
    """Whether a reviewer's remembered approval may ever cover an action of a type: never for
    ``mode: review`` nor for a type that needs more than one reviewer (contract §6.3)."""
    return mode != "review" and approvals_required == 1


def audit_sampled(sample_key: str, rate: float) -> bool:
    """Deterministic per action, so evaluating it again never draws a different sample."""
    if rate <= 0:
        return False
    draw = int.from_bytes(hashlib.sha256(sample_key.encode()).digest()[:8], "big") / 2**64
    return draw < rate


def _decide(policy: CompiledPolicy, proposal: Proposal, budget_seconds: float) -> Decision:
    spec = policy.spec
    findings = schema_findings(policy, proposal.params)

    reached = False
    # Contract §6.3: "always a person" (mode: review) and "two people" mean every time.
    remembered_allowed = (
        proposal.remembered if remembers_approvals(mode=spec.mode, approvals_required=spec.approvals_required) else ()
    )

    def done(status: str, risk: float | None, *, audit: bool = False) -> Decision:
        if status == NEEDS_REVIEW and (remembered := remembered_cover(findings, remembered_allowed)):
            findings.append(
                _finding(
                    "remembered_approval",
                    "pass",
                    "none",
                    f"approved by {remembered['by']}'s remembered approval {remembered['id']} for this session "
                    f"(until {remembered['expires_at']}): it fails only checks that approval accepted",
                    remembered_approval=remembered["id"],
                )
            )
            return Decision(
                status=AUTO_APPROVED,
                risk_score=risk,
                findings=findings,
                policy_version=policy.version,
                reached_thresholds=reached,
                remembered_approval=remembered["id"],
            )
        return Decision(
            status=status,
            risk_score=risk,
            findings=findings,
            audit_flagged=audit,
            policy_version=policy.version,
            reached_thresholds=reached,
        )

    # 1. params fail the schema
    if any(f["outcome"] == "fail" for f in findings):
        return done(BLOCKED, None)
    # 2. the type is never allowed
    if spec.mode == "block":
        findings.append(_finding("mode", "fail", "block", "this action type is blocked by policy (mode: block)"))
        return done(BLOCKED, None)

    evaluated = list(proposal.evidence_findings)
    evaluated.extend(limit_findings(proposal) or rule_findings(policy, proposal, budget_seconds=budget_seconds))
    if spec.builtin_checks:
        evaluated.extend(builtin_findings(proposal, identity_params=spec.identity_params))
    findings.extend(evaluated)

    # 3. a failed block rule
    if any(f["outcome"] == "fail" and f["effect"] == "block" for f in evaluated):
        return done(BLOCKED, None)

    # 5 (computed before 4 so that held actions show their risk too)
    risk_terms = {f["rule"]: f["risk"] for f in evaluated if f["outcome"] == "fail" and f["effect"] == "risk"}
    risk = round(min(1.0, spec.base_risk + sum(risk_terms.values())), 6)
    risk_message = " + ".join(
        [f"base {spec.base_risk:g}"] + [f"{name} {value:g}" for name, value in risk_terms.items()]
    )
    risk_detail = {"base": spec.base_risk, "terms": risk_terms, "total": risk}

    # 4. a human is required
    held = [f for f in evaluated if f["outcome"] == "error" or (f["outcome"] == "fail" and f["effect"] == "review")]
    if spec.mode == "review":
        findings.append(_finding("mode", "fail", "review", "this action type always needs a person (mode: review)"))
        return done(NEEDS_REVIEW, risk)
    if held:
        return done(NEEDS_REVIEW, risk)
    reached = True

    # 5. risk thresholds
    if spec.block_min_risk is not None and risk >= spec.block_min_risk:
        findings.append(
            _finding(
                "risk",
                "fail",
                "block",
                f"risk {risk_message} = {risk:g} is at or above block_min_risk {spec.block_min_risk:g}",
                **risk_detail,
            )
        )
        return done(BLOCKED, risk)
    if risk > spec.auto_approve_max_risk:
        findings.append(
            _finding(
                "risk",
                "fail",
                "review",
                f"risk {risk_message} = {risk:g} is above auto_approve_max_risk {spec.auto_approve_max_risk:g}",
                **risk_detail,
            )
        )
        return done(NEEDS_REVIEW, risk)
    findings.append(
        _finding(
            "risk",
            "pass",
            "none",
            f"risk {risk_message} = {risk:g} is within auto_approve_max_risk {spec.auto_approve_max_risk:g}",
            **risk_detail,
        )
    )

    # 6. confidence and amount
    hold = False
    if spec.min_confidence is not None:
        # Written so that a NaN confidence is held too: every comparison with NaN is false.
        if proposal.confidence is None or not proposal.confidence >= spec.min_confidence:
            shown = "missing" if proposal.confidence is None else f"{proposal.confidence:g}"
            findings.append(
                _finding(
                    "confidence",
                    "fail",
                    "review",
                    f"confidence {shown} is below min_confidence {spec.min_confidence:g}",
                )
            )
            hold = True
        else:
            findings.append(
                _finding(
                    "confidence",
                    "pass",
                    "none",
                    f"confidence {proposal.confidence:g} meets min_confidence {spec.min_confidence:g}",
                )
            )
    if spec.max_auto_amount is not None and spec.amount_path:
        amount = amount_at(proposal.params, spec.amount_path)
        # A NaN or infinite amount is no amount: NaN compares false with every limit and would pass.
        if (
            isinstance(amount, bool)
            or not isinstance(amount, (int, float))
            or (isinstance(amount, float) and not math.isfinite(amount))
        ):
            findings.append(
                _finding(
                    "amount", "fail", "review", f"no numeric amount at {spec.amount_path!r}; a person must check it"
                )
            )
            hold = True
        elif amount > spec.max_auto_amount:
            findings.append(
                _finding(
                    "amount", "fail", "review", f"amount {amount:g} is above max_auto_amount {spec.max_auto_amount:g}"
                )
            )
            hold = True
        else:
            findings.append(
                _finding(
                    "amount", "pass", "none", f"amount {amount:g} is within max_auto_amount {spec.max_auto_amount:g}"
                )
            )
    if hold:
        return done(NEEDS_REVIEW, risk)

    # 7. through, perhaps sampled for an audit label
    return done(AUTO_APPROVED, risk, audit=audit_sampled(proposal.sample_key, spec.audit_sample_rate))


def policy_evaluate(
    policy: CompiledPolicy, proposal: Proposal, *, budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS
) -> Decision:
    """Apply the decision procedure. Never raises: a fault of the gate holds the action."""
    try:
        return _decide(policy, proposal, budget_seconds)
    except Exception as exc:
        return evaluation_error_decision(exc, policy_version=policy.version)


def evaluation_error_decision(exc: BaseException | str, *, policy_version: int | None = None) -> Decision:
    error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return Decision(
        status=NEEDS_REVIEW,
        risk_score=None,
        findings=[
            _finding(
                "evaluation",
                "error",
                "review",
                "the gate could not evaluate this action; a person must decide",
                error=error,
            )
        ],
        policy_version=policy_version,
    )
