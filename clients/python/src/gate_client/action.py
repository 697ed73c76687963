"""An action as the gate returns it (contract §2), with the questions an agent asks of it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

APPROVED = frozenset({"auto_approved", "approved"})
FINAL = frozenset({"auto_approved", "approved", "rejected", "blocked", "expired", "cancelled"})


def params_hash(params: Mapping[str, Any]) -> str:
    """The gate's hash of params (contract §6.3): SHA-256 hex of the JSON with sorted keys and no
    spaces. Reported with an outcome, it tells the gate which params were executed."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Action:
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def action_type(self) -> str:
        return str(self.data.get("action_type", ""))

    @property
    def approved(self) -> bool:
        """The agent may act: ``auto_approved`` or ``approved``."""
        return self.status in APPROVED

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def params(self) -> dict[str, Any]:
        """The params as proposed."""
        return dict(self.data.get("params") or {})

    @property
    def approved_params(self) -> dict[str, Any] | None:
        """A reviewer's edit of the params (contract §6.3), or None when not edited."""
        edited = self.data.get("approved_params")
        return dict(edited) if edited is not None else None

    @property
    def params_to_execute(self) -> dict[str, Any]:
        """What an agent acts with: the reviewer's edit when there is one, else the proposed params."""
        edited = self.approved_params
        return edited if edited is not None else self.params

    @property
    def decision(self) -> dict[str, Any] | None:
        return self.data.get("decision")

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.data.get("findings") or [])

    @property
    def decided_by(self) -> str | None:
        """``policy`` or the reviewer's username; None while undecided (and for expired/cancelled)."""
        by = (self.decision or {}).get("by")
        return str(by) if by else None

    @property
    def by_reviewer(self) -> bool:
        return self.decided_by not in (None, "policy")

    @property
    def policy_checks(self) -> list[str]:
        """The policy's checks this action did not pass, one line each (``rule: message``)."""
        return [
            f"{f.get('rule')}: {f.get('message') or f.get('error') or f.get('outcome')}"
            for f in self.findings
            if f.get("outcome") != "pass"
        ]

    @property
    def reason(self) -> str:
        """Why it stands as it does, in the decider's words: a reviewer's reason (with their name),
        ``rejected by <reviewer> (no reason given)``, or, for the policy's own decisions, the checks
        it did not pass. A reviewer's decision never borrows the policy's findings as its reason:
        those are in ``policy_checks`` (and in ``explanation``, labelled)."""
        if self.status == "expired":
            return "nobody decided before the review deadline (expired, not rejected)"
        if self.status == "cancelled":
            return "withdrawn by the agent"
        decision = self.decision or {}
        given = str(decision.get("reason") or "").strip()
        if self.by_reviewer:
            return f"{given} ({self.decided_by})" if given else f"{self.status} by {self.decided_by} (no reason given)"
        if given:
            return given
        checks = self.policy_checks
        return "; ".join(checks) if checks else self.status

    @property
    def explanation(self) -> str:
        """``reason``, and, when a reviewer decided, the policy's checks after it, labelled as such."""
        checks = self.policy_checks
        if self.by_reviewer and checks:
            return f"{self.reason}. The policy's checks (not the reviewer's words): {'; '.join(checks)}"
        return self.reason

    @property
    def outcome(self) -> dict[str, Any] | None:
        """What the agent reported when it acted (contract §2), or None before a report."""
        return self.data.get("outcome")

    def __getitem__(self, key: str) -> Any:
        return self.data[key]
