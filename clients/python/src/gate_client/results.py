"""Values an agent framework hands back to its model instead of an exception: ``Refusal`` (the gate
said no) and ``PendingAction`` (a human has not decided yet; a serialisable handle to resume with)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from gate_client.action import Action

_HOW = {
    "rejected": "was rejected by a reviewer",
    "blocked": "was blocked by the policy",
    "expired": "expired before anyone decided",
    "cancelled": "was withdrawn",
}


@dataclass(frozen=True)
class Refusal:
    """The gate did not let a call through, as a value (``on_refusal="return"``).

    ``message`` is written for the model: what was refused, why (the decider's words, and the
    policy's checks labelled as such), and that nothing was carried out. A refusal is falsy, so
    ``if not (result := refund(...)):`` reads naturally."""

    action: Action
    tool: str = ""

    @property
    def action_id(self) -> str:
        return self.action.id

    @property
    def status(self) -> str:
        return self.action.status

    @property
    def reason(self) -> str:
        return self.action.reason

    @property
    def message(self) -> str:
        name = self.tool or self.action.action_type
        call = f"{name}({json.dumps(self.action.params, sort_keys=True)})"
        how = _HOW.get(self.status, "was not approved")
        return (
            f"{call} {how} (action {self.action_id}): {self.action.explanation}. "
            "It was NOT carried out; do not retry it unchanged."
        )

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class PendingAction:
    """A proposed action a human has not decided yet, as a handle that survives a restart:
    ``to_json()`` it, stop the process, and later ``PendingAction.from_json(text)`` and
    ``Gate.resume(handle)`` (or ``gated_function.resume(handle)``, which runs the function once if
    it was approved). ``extra`` carries whatever the caller needs to continue (JSON values: a
    framework's thread id, say). Falsy, like a refusal: the call did not happen (yet)."""

    action_id: str
    action_type: str
    params: dict[str, Any]
    status: str = "needs_review"
    idempotency_key: str | None = None
    review_url: str | None = None
    tool_call_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_action(cls, action: Action, *, tool_call_id: str | None = None, **extra: Any) -> PendingAction:
        return cls(
            action_id=action.id,
            action_type=action.action_type,
            params=action.params,
            status=action.status,
            idempotency_key=action.data.get("idempotency_key"),
            review_url=action.data.get("review_url"),
            tool_call_id=tool_call_id,
            extra=dict(extra),
        )

    def to_json(self) -> str:
        return json.dumps({"gate_pending_action": 1, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PendingAction:
        """The handle ``to_json`` wrote; ValueError for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("gate_pending_action", None) != 1:
            raise ValueError("not a gate_client PendingAction (to_json) document")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a gate_client PendingAction: {exc}") from None

    @property
    def message(self) -> str:
        """For the model: the call waits for a human; nothing was carried out yet."""
        return (
            f"{self.action_type}({json.dumps(self.params, sort_keys=True)}) is held for a human's review "
            f"(action {self.action_id}, {self.status}). It was NOT carried out yet; it will be once approved."
        )

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.message
