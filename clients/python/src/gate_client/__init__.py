"""Autonomy Gate's Python client: gate an agent's tool calls in one line (contract §4)."""

from gate_client.action import APPROVED, FINAL, Action, params_hash
from gate_client.client import AsyncGate, Gate, new_idempotency_key
from gate_client.decorators import (
    GatedFunction,
    current_tool_call_id,
    raise_unless_approved,
    requires_approval,
    tool_call,
)
from gate_client.errors import (
    ActionBlocked,
    ActionCancelled,
    ActionExpired,
    ActionRejected,
    AlreadyExecuted,
    ApprovalTimeout,
    AuthenticationError,
    ConflictError,
    GateError,
    InvalidRequestError,
    NotApproved,
    NotFoundError,
    ParamsNotApplicable,
    PermissionDeniedError,
    RateLimitedError,
)
from gate_client.results import PendingAction, Refusal
from gate_client.webhooks import verify_signature

__all__ = [
    "APPROVED",
    "FINAL",
    "Action",
    "ActionBlocked",
    "ActionCancelled",
    "ActionExpired",
    "ActionRejected",
    "AlreadyExecuted",
    "ApprovalTimeout",
    "AsyncGate",
    "AuthenticationError",
    "ConflictError",
    "Gate",
    "GateError",
    "GatedFunction",
    "InvalidRequestError",
    "NotApproved",
    "NotFoundError",
    "ParamsNotApplicable",
    "PendingAction",
    "PermissionDeniedError",
    "RateLimitedError",
    "Refusal",
    "current_tool_call_id",
    "new_idempotency_key",
    "params_hash",
    "raise_unless_approved",
    "requires_approval",
    "tool_call",
    "verify_signature",
]
