"""The params of an action as hashes: the canonical hash of any params (the proposal's
``params_hash``, a reviewer's edit, what an agent says it executed), and the hash an action was
approved with (contract §6.3)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from approvals.models import ProposedAction, Status


def params_hash(params: Any) -> str:
    """Equal params (as JSON, whatever their key order), equal hash: SHA-256 hex of the params as
    JSON with sorted keys and no spaces. The repeat checks compare it, reviewers' edits are stored
    with it, and an agent's outcome is checked against it."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def proposed_params_hash(action: ProposedAction) -> str:
    """The hash of the params as proposed (stored when proposed; computed for a row without it)."""
    return action.params_hash or params_hash(action.params)


def approved_params_hash_of(action: ProposedAction) -> str | None:
    """The hash of the params the agent may act with: a reviewer's edit's, else the proposed ones'
    (an auto-approved action, an approval without an edit). While held, the params under approval so
    far (None before any approval); None when the action may not be acted on."""
    if action.approved_params_hash:
        return action.approved_params_hash if action.status in (Status.APPROVED, Status.NEEDS_REVIEW) else None
    if action.status in (Status.APPROVED, Status.AUTO_APPROVED):
        return proposed_params_hash(action)
    return None
