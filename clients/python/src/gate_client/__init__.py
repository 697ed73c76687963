"""Autonomy Gate's Python client: gate an agent's tool calls in one line (contract §4)."""

from gate_client.action import APPROVED, FINAL, Action, params_hash
from gate_client.client import AsyncGate, Gate, new_idempotency_key
from gate_client.decorators import raise_unless_approved, requires_approval
from gate_client.errors import (
    ActionBlocked,
    ActionCancelled,
    ActionExpired,
    ActionRejected,
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
from gate_client.webhooks import verify_signature

__all__ = [
    "APPROVED",
    "FINAL",
    "Action",
    "ActionBlocked",
    "ActionCancelled",
    "ActionExpired",
    "ActionRejected",
    "ApprovalTimeout",
    "AsyncGate",
    "AuthenticationError",
    "ConflictError",
    "Gate",
    "GateError",
    "InvalidRequestError",
    "NotApproved",
    "NotFoundError",
    "ParamsNotApplicable",
    "PermissionDeniedError",
    "RateLimitedError",
    "new_idempotency_key",
    "params_hash",
    "raise_unless_approved",
    "requires_approval",
    "verify_signature",
]
