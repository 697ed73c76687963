"""The shapes the OpenAPI schema gives what drf-spectacular cannot see in a serializer: JSON objects,
trajectories, the error bodies, the ``wait`` and ``Idempotency-Key`` parameters, and the links
between the action operations (approvals/api/schema.py puts them in).

Each says exactly what the server accepts: the bounds are the settings' values when the schema is
made, and the rules no JSON Schema can state (the header and body keys) are in the descriptions.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from approvals.api.serializers import MAX_KEY_LENGTH, MAX_TOOL_NAME_LENGTH
from approvals.policy.trajectory import OPENAI_ROLE_ALIASES, ROLES

JSON_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}  # as JSONObjectField

IDEMPOTENCY_RULE = (
    "The idempotency key may be sent in the Idempotency-Key header, in the body's idempotency_key, or "
    "both. When both are given they must be equal, character for character, else 400 "
    '{"idempotency_key": ["Differs from the Idempotency-Key header."]} and nothing is stored; when only '
    "the header is given it is the key. A key is 1-255 characters after surrounding whitespace is "
    "trimmed. The same key with the same body answers the stored action (200); with another body, 409."
)


def wait_parameter_schema() -> dict[str, Any]:
    bound = settings.GATE_MAX_WAIT_SECONDS
    return {"type": "number", "minimum": 0, "maximum": bound}


def wait_description() -> str:
    bound = settings.GATE_MAX_WAIT_SECONDS
    return (
        f"Seconds to hold the response until the action is decided (0-{bound}, GATE_MAX_WAIT_SECONDS). "
        f"A negative or non-finite number, or one that is not a number, is a 400; a larger one is held "
        f"to {bound}."
    )


def idempotency_header_schema() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": r"\S"}


def _tool_name() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_TOOL_NAME_LENGTH}


def trajectory_schema() -> dict[str, Any]:
    """The two accepted forms (approvals.policy.trajectory): native steps, or OpenAI chat messages."""
    limit = settings.GATE_MAX_TRAJECTORY_STEPS
    tool_call = {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": ["tool_call"]},
            "tool": _tool_name(),
            "args": {
                **JSON_OBJECT,
                "nullable": True,
                "description": "An object (a string holding a JSON object is read as that object)",
            },
            "result": {"description": "Any JSON value; a string holding JSON is read as that value"},
        },
        "required": ["kind", "tool"],
    }
    message = {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": ["message"]},
            "role": {"type": "string", "enum": list(ROLES), "default": "assistant"},
            "content": {"description": "Text, OpenAI content parts, or any JSON value (read as its JSON text)"},
        },
        "required": ["kind"],
    }
    openai_call = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "function": {
                "type": "object",
                "properties": {"name": _tool_name(), "arguments": {"description": "JSON text of an object"}},
                "required": ["name"],
            },
        },
        "required": ["function"],
    }
    openai_message = {
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": [*ROLES, *OPENAI_ROLE_ALIASES]},
            "content": {"description": "Text or OpenAI content parts"},
            "tool_calls": {"type": "array", "items": openai_call, "nullable": True},
            "tool_call_id": {"type": "string"},
        },
        "required": ["role"],
    }
    return {
        "oneOf": [
            {
                "type": "array",
                "maxItems": limit,
                "items": {"oneOf": [tool_call, message]},
                "description": "Native steps",
            },
            {
                "type": "object",
                "properties": {
                    "format": {"type": "string", "enum": ["openai"]},
                    "messages": {"type": "array", "maxItems": limit, "items": openai_message},
                },
                "required": ["format", "messages"],
                "description": "OpenAI chat messages",
            },
        ],
        "nullable": True,
        "description": f"What the agent did before (at most {limit} steps once normalised, GATE_MAX_TRAJECTORY_STEPS)",
    }


# --- Error bodies ------------------------------------------------------------------------------

ERROR = "Error"
VALIDATION_ERRORS = "ValidationErrors"
PARAMS_ERROR = "ParamsError"
UNSAFE_POLICY_CHANGE = "UnsafePolicyChange"
BAD_REQUEST = "BadRequest"
DECISION_BAD_REQUEST = "DecisionBadRequest"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


ERROR_COMPONENTS: dict[str, dict[str, Any]] = {
    ERROR: {
        "type": "object",
        "description": "Every error that is not about particular fields",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
        "additionalProperties": False,
    },
    VALIDATION_ERRORS: {
        "type": "object",
        "description": 'Field errors: {"<field>": ["message", ...], ...}; a list field\'s items by index '
        '({"tags": {"0": ["message"]}}), errors of the whole body under non_field_errors',
        "minProperties": 1,
        "additionalProperties": {
            "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}, {"type": "string"}]
        },
    },
    PARAMS_ERROR: {
        "type": "object",
        "description": "A reviewer's edited params that do not fit the action type's params_schema: each problem "
        "with its JSON pointer",
        "properties": {
            "detail": {"type": "string"},
            "params": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "JSON pointer into params ('/' for the whole)"},
                        "message": {"type": "string"},
                    },
                    "required": ["path", "message"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["detail", "params"],
        "additionalProperties": False,
    },
    UNSAFE_POLICY_CHANGE: {
        "type": "object",
        "description": "Thresholds that would newly auto-approve actions labelled unsafe; nothing changed",
        "properties": {
            "detail": {"type": "string"},
            "unsafe_newly_auto_approved": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "action_type": {"type": "string"},
                        "summary": {"type": "string"},
                        "live_status": {"type": "string"},
                    },
                },
            },
            "safe_newly_auto_approved": {"type": "integer", "minimum": 0},
            "replayed": {"type": "integer", "minimum": 0},
        },
        "required": ["detail", "unsafe_newly_auto_approved", "safe_newly_auto_approved", "replayed"],
        "additionalProperties": False,
    },
    BAD_REQUEST: {
        "description": "A malformed request: one message, or the fields' messages",
        "anyOf": [_ref(ERROR), _ref(VALIDATION_ERRORS)],
    },
    DECISION_BAD_REQUEST: {
        "description": "A malformed decision, or edited params that do not fit the schema (ParamsError)",
        "anyOf": [_ref(PARAMS_ERROR), _ref(ERROR), _ref(VALIDATION_ERRORS)],
    },
}

# The body of each error status; an operation may name another for one status (ERROR_OVERRIDES).
ERROR_BODIES = {"400": BAD_REQUEST, "401": ERROR, "403": ERROR, "404": ERROR, "409": ERROR, "413": ERROR, "429": ERROR}
ERROR_OVERRIDES: dict[tuple[str, str, str], list[str]] = {
    ("/api/v1/actions/{action_id}/decision", "post", "400"): [DECISION_BAD_REQUEST],
    ("/api/v1/evaluation/sweep/apply", "post", "409"): [UNSAFE_POLICY_CHANGE, ERROR],
}


def error_body_schema(path: str, method: str, code: str) -> dict[str, Any]:
    names = ERROR_OVERRIDES.get((path, method, code), [ERROR_BODIES[code]])
    if len(names) == 1:
        return dict(_ref(names[0]))
    return {"anyOf": [_ref(name) for name in names]}


# --- Links: from a proposed action to what an agent or reviewer does with it next ---------------

ACTION = "/api/v1/actions/{action_id}"
ACTION_LINKS: dict[str, tuple[str, str]] = {
    "GetAction": (ACTION, "get"),
    "CancelAction": (f"{ACTION}/cancel", "post"),
    "ReportOutcome": (f"{ACTION}/outcome", "post"),
    "DecideAction": (f"{ACTION}/decision", "post"),
    "LabelAction": (f"{ACTION}/labels", "post"),
}
# The operations whose answer is an action, and so link on to it.
LINKED_FROM: list[tuple[str, str, tuple[str, ...]]] = [
    ("/api/v1/actions", "post", ("200", "201")),
    (ACTION, "get", ("200",)),
    (f"{ACTION}/decision", "post", ("200",)),
]
