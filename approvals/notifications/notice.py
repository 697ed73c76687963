"""A held action as a notification tells it: what was proposed, by whom, how risky, why it was held
(the checks it did not pass), where to decide it, and, once it is settled, how. Built from the one
representation of an action (approvals.gate.representation), for e-mail and Slack alike."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from approvals.gate.representation import action_read_represented

PARAMS_MAX_CHARS = 1200


@dataclass(frozen=True)
class Failed:
    rule: str
    outcome: str  # fail | error
    message: str


@dataclass(frozen=True)
class Notice:
    action_id: str
    action_type: str
    agent: str
    status: str
    risk_score: float | None
    params_text: str
    rationale: str
    failed: tuple[Failed, ...]
    link: str
    decision: dict[str, Any] | None = None
    escalated: bool = False
    approvals: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def risk_text(self) -> str:
        return "-" if self.risk_score is None else f"{self.risk_score:.2f}"

    @property
    def subject(self) -> str:
        return f"[gate] {self.action_type} by {self.agent} needs review (risk {self.risk_text})"

    @property
    def held(self) -> bool:
        return self.status == "needs_review"


def params_text(params: Any) -> str:
    text = json.dumps(params, indent=2, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= PARAMS_MAX_CHARS else text[: PARAMS_MAX_CHARS - 1] + "…"


def notice_from(represented: dict[str, Any]) -> Notice:
    failed = tuple(
        Failed(
            rule=str(f.get("rule", "")),
            outcome=str(f.get("outcome", "")),
            message=str(f.get("message") or f.get("error") or ""),
        )
        for f in represented.get("findings") or []
        if f.get("outcome") != "pass"
    )
    return Notice(
        action_id=represented["id"],
        action_type=represented["action_type"],
        agent=represented["agent"],
        status=represented["status"],
        risk_score=represented.get("risk_score"),
        params_text=params_text(represented.get("params")),
        rationale=represented.get("rationale") or "",
        failed=failed,
        link=settings.GATE_PUBLIC_URL + represented["review_url"],
        decision=represented.get("decision"),
        escalated=bool(represented.get("escalated")),
        approvals=tuple(represented.get("approvals") or ()),
    )


def notice_of(action_id: str) -> Notice:
    """The action ``action_id`` as it stands now, as a notification tells it."""
    return notice_from(action_read_represented(action_id))
