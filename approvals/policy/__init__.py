"""The gate's brain: plain Python, no ORM and no HTTP."""

from approvals.policy.engine import (
    AUTO_APPROVED,
    BLOCKED,
    NEEDS_REVIEW,
    CompiledPolicy,
    Decision,
    Proposal,
    amount_at,
    audit_sampled,
    compile_policy,
    evaluation_error_decision,
    failed_checks,
    policy_evaluate,
)
from approvals.policy.evidence import EvidenceError, HistorySpec, LookupSpec, evidence_fields
from approvals.policy.spec import (
    EVIDENCE_FIELDS,
    ActionTypeSpec,
    PolicyError,
    RuleSpec,
    build_document,
    check_cel_expression,
    check_json_schema,
    parse_action_type,
    parse_document,
)
from approvals.policy.trajectory import TrajectoryError, normalize_trajectory

__all__ = [
    "AUTO_APPROVED",
    "BLOCKED",
    "EVIDENCE_FIELDS",
    "NEEDS_REVIEW",
    "ActionTypeSpec",
    "CompiledPolicy",
    "Decision",
    "EvidenceError",
    "HistorySpec",
    "LookupSpec",
    "PolicyError",
    "Proposal",
    "RuleSpec",
    "TrajectoryError",
    "amount_at",
    "audit_sampled",
    "build_document",
    "check_cel_expression",
    "check_json_schema",
    "compile_policy",
    "evaluation_error_decision",
    "evidence_fields",
    "failed_checks",
    "normalize_trajectory",
    "parse_action_type",
    "parse_document",
    "policy_evaluate",
]
