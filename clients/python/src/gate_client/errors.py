"""What can go wrong, as types an agent can catch and explain to its model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gate_client.action import Action


class GateError(Exception):
    """The gate answered with an error, or could not be reached after the retries."""

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class AuthenticationError(GateError):
    """401: the token is missing, wrong or revoked."""


class PermissionDeniedError(GateError):
    """403: a disabled agent or action type, or a type this agent may not propose."""


class NotFoundError(GateError):
    """404: no such action (or another agent's)."""


class ConflictError(GateError):
    """409: the action's state does not allow this, or an idempotency key reused with another body."""


class InvalidRequestError(GateError):
    """400: the request is malformed; ``body`` holds the field errors."""


class RateLimitedError(GateError):
    """429 after the retries: ``retry_after`` seconds, when the gate said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class NotApproved(GateError):
    """The gate did not let the action through. ``reason`` says why, in words a model can use."""

    def __init__(self, action: Action) -> None:
        self.action = action
        self.status = action.status
        self.reason = action.reason
        super().__init__(f"{action.action_type} {action.id} was {action.status}: {action.explanation}")


class ActionRejected(NotApproved):
    """A reviewer rejected it; ``reason`` is the reviewer's."""


class ActionBlocked(NotApproved):
    """The policy refused it (invalid params, a block rule, block-level risk)."""


class ActionExpired(NotApproved):
    """Nobody decided in time. Not a rejection: nobody said no, and nobody said yes."""


class ActionCancelled(NotApproved):
    """The agent withdrew it (for example after an approval timeout)."""


class ParamsNotApplicable(GateError):
    """A reviewer approved edited params (``action.approved_params``) that the decorator cannot pass
    to the function: a custom ``params=`` mapping it cannot invert, or arguments the function does
    not take. The function did not run; the outcome was reported as not executed."""

    def __init__(self, action: Action, problem: str) -> None:
        self.action = action
        self.reason = problem
        super().__init__(f"{action.action_type} {action.id} was approved with edited params: {problem}")


class AlreadyExecuted(GateError):
    """``resume`` found the approved action already acted on (its outcome is reported): it does not
    run a second time. ``action.outcome`` holds what was reported."""

    def __init__(self, action: Action) -> None:
        self.action = action
        super().__init__(f"{action.action_type} {action.id} was already acted on; it does not run again")


class ApprovalTimeout(GateError):
    """The caller stopped waiting while the action was still undecided (pending or needs_review).

    This is not a denial. ``cancelled`` tells whether the action was withdrawn (the decorator does
    by default), so that a late approval cannot be acted on; when it was not (``cancel_on_timeout=
    False``, or the withdrawal failed), the action may still be decided: ``pending`` is the handle
    to resume it with later (``Gate.resume`` / ``gated.resume``).
    """

    def __init__(
        self, action: Action, waited: float, *, cancelled: bool | None = None, cancel_error: str | None = None
    ) -> None:
        from gate_client.results import PendingAction

        self.action = action
        self.waited = waited
        self.cancelled = action.status == "cancelled" if cancelled is None else cancelled
        self.pending = None if self.cancelled else PendingAction.from_action(action)
        what = f"{action.action_type} {action.id}"
        if self.cancelled:
            message = f"{what} was still undecided after {waited:.0f}s and was withdrawn (cancelled)"
        elif cancel_error:
            message = (
                f"{what} is still {action.status} after {waited:.0f}s: withdrawing it failed ({cancel_error}); "
                "it may still be decided"
            )
        else:
            message = f"{what} is still {action.status} after {waited:.0f}s; it may still be decided (resume it later)"
        super().__init__(message)
