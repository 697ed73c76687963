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
    def reason(self) -> str:
        """Why it stands as it does: the decision's reason, else the checks it did not pass."""
        if self.status == "expired":
            return "nobody decided before the review deadline (expired, not rejected)"
        if self.status == "cancelled":
            return "withdrawn by the agent"
        decision = self.decision or {}
        if decision.get("reason"):
            by = decision.get("by")
            return f"{decision['reason']} ({by})" if by and by != "policy" else str(decision["reason"])
        failed = [f for f in self.findings if f.get("outcome") != "pass"]
        if failed:
            return "; ".join(
                f"{f.get('rule')}: {f.get('message') or f.get('error') or f.get('outcome')}" for f in failed
            )
        return self.status

    def __getitem__(self, key: str) -> Any:
        return self.data[key]
