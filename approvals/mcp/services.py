"""What the MCP gateway writes: a tools/call proposed as an action (through the one way an action
is created, approvals.gate.services.action_propose), and what happened when it was forwarded
(reported as an agent reports its outcome)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from approvals.gate import services as gate_services
from approvals.gate.params import params_hash
from approvals.lifecycle import events
from approvals.lifecycle.audit import audit_record
from approvals.lifecycle.transitions import TransitionRefused
from approvals.mcp import selectors
from approvals.models import ActionType, Agent, Mode, ProposedAction, Status

# A tool whose name no action type has is proposed under this type: always held for a reviewer
# (mode review), never auto-approved, so that an unlisted tool is never forwarded by default. The
# gateway creates it once, the first time it is needed; its params are the tool and its arguments.
UNLISTED_TOOL_TYPE = "mcp_unlisted_tool"
UNLISTED_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tool", "arguments"],
    "properties": {"tool": {"type": "string"}, "arguments": {"type": "object"}},
}
GATEWAY_ACTOR = "mcp-gateway"
# Decided statuses after which the gateway forwards the call.
FORWARDED_STATUSES = frozenset({Status.AUTO_APPROVED, Status.APPROVED})


@dataclass(frozen=True)
class ToolCall:
    """One tools/call as the gateway proposes it."""

    agent_id: int
    session_id: str
    tool: str  # <server>__<tool>
    arguments: dict[str, Any]
    annotations: dict[str, Any]
    trajectory: list[dict[str, Any]]
    occurrence: int  # how many times this very call was forwarded before in the session

    def idempotency_key(self) -> str:
        """The same call (session, tool, arguments) gets the same action until it is forwarded; a
        repeat after that is a new proposal."""
        canonical = json.dumps(
            [self.session_id, self.tool, self.arguments, self.occurrence], sort_keys=True, separators=(",", ":")
        )
        return "mcp:" + hashlib.sha256(canonical.encode()).hexdigest()


def unlisted_tool_type() -> ActionType:
    """The unlisted tools' type; created (audited) the first time it is needed, unless the policy
    file declared it already (with a review group or rules of its own)."""
    found = ActionType.objects.filter(name=UNLISTED_TOOL_TYPE).first()
    if found is not None:
        return found
    with transaction.atomic():
        action_type, created = ActionType.objects.get_or_create(
            name=UNLISTED_TOOL_TYPE,
            defaults={
                "description": "MCP tools with no action type of their own: every call is held for a reviewer.",
                "params_schema": UNLISTED_TOOL_SCHEMA,
                "mode": Mode.REVIEW,
            },
        )
        if created:
            audit_record(
                action=None,
                event="action_type_created",
                actor=GATEWAY_ACTOR,
                data={"action_type": UNLISTED_TOOL_TYPE, "mode": Mode.REVIEW, "why": "an MCP tool with no action type"},
            )
    return action_type


def tool_call_propose(call: ToolCall) -> ProposedAction:
    """Propose the call as an action of the type named after the tool (or the unlisted tools' type),
    or return the action this same call already is. Raises NotPermitted."""
    agent = Agent.objects.get(pk=call.agent_id)
    action_type = selectors.action_type_named(call.tool)
    if action_type is None:
        action_type = unlisted_tool_type()
        params: dict[str, Any] = {"tool": call.tool, "arguments": call.arguments}
    else:
        params = call.arguments
    gate_services.proposal_permitted_check(agent, action_type)
    context = {"session_id": call.session_id, "mcp": {**call.annotations, "tool": call.tool}}
    action, _ = gate_services.action_propose(
        agent=agent,
        action_type=action_type,
        params=params,
        # The call itself: a retry later in the session has a longer trajectory, and is the same call.
        fingerprint=params_hash({"action_type": action_type.name, "params": params}),
        trajectory_raw=call.trajectory,
        context=context,
        idempotency_key=call.idempotency_key(),
    )
    return action


def tool_call_wait(action_id: str, seconds: float) -> ProposedAction:
    """The action once it is decided (or no longer needs review), or after ``seconds``."""
    events.wait_for(
        action_id,
        seconds,
        lambda: selectors.action_status(action_id),
        lambda status: status not in (Status.PENDING, Status.NEEDS_REVIEW),
    )
    return selectors.action_decided(action_id)


def tool_call_forwarded(*, action: ProposedAction, result: Any, error: str = "") -> bool:
    """Report what the upstream answered as the action's outcome (once: False when it had been
    reported already, i.e. the call was forwarded before)."""
    try:
        gate_services.action_report_outcome(
            action_id=str(action.pk),
            agent=action.agent,
            executed=not error,
            result=result,
            error=error,
            params_hash=params_hash(forwarded_arguments(action)) if not error else None,
        )
    except TransitionRefused:
        return False
    return True


def forwarded_arguments(action: ProposedAction) -> dict[str, Any]:
    """The arguments the upstream gets: a reviewer's edit when there is one."""
    params = action.approved_params if action.approved_params is not None else action.params
    if action.action_type.name == UNLISTED_TOOL_TYPE and isinstance(params, dict):
        params = params.get("arguments", {})
    return params if isinstance(params, dict) else {}


def refusal_reason(action: ProposedAction) -> str:
    """Why the call is refused: the reviewer's reason, else the failing findings, each said as
    what it is (a reviewer's rejection without a reason is not the policy's findings)."""
    decision = getattr(action, "decision", None)
    findings = "; ".join(
        f"{f.get('rule')}: {f.get('message') or f.get('error') or f.get('outcome')}"
        for f in selectors.failing_findings(action)
    )
    if action.status == Status.REJECTED:
        reviewer = decision.reviewer.get_username() if decision is not None and decision.reviewer else "a reviewer"
        if decision is not None and decision.reason:
            return f"Rejected by {reviewer}: {decision.reason}"
        return f"Rejected by {reviewer} (no reason given)."
    if action.status == Status.BLOCKED:
        return f"Blocked by the policy: {findings or (decision.reason if decision else '')}"
    if action.status == Status.EXPIRED:
        return "Expired: no reviewer decided in time."
    return f"Not forwarded: the action is {action.status}."
