"""What a service refuses, by kind: the API maps each ``code`` to an HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the gate refuses; ``code`` tells the API which status to answer."""

    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParams(ServiceError):
    """Params that do not match the action type's schema: ``problems`` names each ({"path",
    "message"}), and nothing changed."""

    def __init__(self, message: str, *, problems: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class ActionConflict(ServiceError):
    """The action is not in a state that allows this (a transition's guard refused it)."""

    code = "conflict"


class IdempotencyConflict(ServiceError):
    code = "conflict"


class NotPermitted(ServiceError):
    """The caller may not do this (a disabled agent or type, a type the agent may not propose)."""

    code = "forbidden"


class NotReviewerOf(NotPermitted):
    """The reviewer may not review this action: its type has a review group they are not in (contract
    §6.3). The API answers 403, the desk its 403 page; nothing changes."""


class UnsafePolicyChange(ServiceError):
    """A policy change that would newly auto-approve actions labelled unsafe (contract §6.2), not
    accepted: ``cases`` names each ({"id", "action_type", "summary", "live_status"}), beside the
    number of labelled safe actions it would newly automate."""

    code = "conflict"

    def __init__(
        self, message: str, *, cases: list[dict[str, str]], safe_newly_auto_approved: int, replayed: int
    ) -> None:
        super().__init__(message)
        self.cases = cases
        self.safe_newly_auto_approved = safe_newly_auto_approved
        self.replayed = replayed


class NoShadowPolicy(ServiceError):
    """Shadow mode is off: there is no active shadow policy to show or promote."""

    code = "not_found"
