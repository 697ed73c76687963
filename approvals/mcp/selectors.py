"""What the MCP gateway reads: the upstream servers of the current policy, action types by name,
an action as it stands."""

from __future__ import annotations

from typing import Any

from approvals import policy
from approvals.gate import selectors as gate_selectors
from approvals.models import ActionType, Agent, ProposedAction


def mcp_servers_current() -> dict[str, policy.McpServerSpec]:
    """The upstream servers the newest policy version names, by name (stored valid: the policy
    file was checked on import)."""
    servers, _ = policy.parse_mcp_servers(gate_selectors.mcp_servers_document_latest())
    return {server.name: server for server in servers}


def action_type_named(name: str) -> ActionType | None:
    return ActionType.objects.filter(name=name).first()


def agent_enabled(agent_id: int) -> Agent | None:
    return Agent.objects.filter(pk=agent_id, enabled=True).first()


def action_decided(action_id: str) -> ProposedAction:
    """The action with its decision and its reviewer, as the gateway answers from it."""
    return ProposedAction.objects.select_related("action_type", "agent", "decision__reviewer").get(pk=action_id)


def action_status(action_id: str) -> str | None:
    return gate_selectors.action_status(action_id)


def failing_findings(action: ProposedAction) -> list[dict[str, Any]]:
    return [f for f in action.findings or [] if isinstance(f, dict) and f.get("outcome") != "pass"]
