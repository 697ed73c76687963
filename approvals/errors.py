"""What a service refuses, by kind: the API maps each ``code`` to an HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the gate refuses; ``code`` tells the API which status to answer."""

    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActionConflict(ServiceError):
    """The action is not in a state that allows this (a transition's guard refused it)."""

    code = "conflict"


class IdempotencyConflict(ServiceError):
    code = "conflict"


class NotPermitted(ServiceError):
    """The caller may not do this (a disabled agent or type, a type the agent may not propose)."""

    code = "forbidden"


class NoShadowPolicy(ServiceError):
    """Shadow mode is off: there is no active shadow policy to show or promote."""

    code = "not_found"
