"""The OpenAPI schema, made honest about errors: every operation documents the 4xx answers it can
give, each with the JSON error body the exception handler writes (contract §2).

A drf-spectacular postprocessing hook, so that no view has to repeat them: views document their
success responses and any error they explain specially; this adds the rest.
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'Either {"detail": "..."} or {"<field>": ["message", ...], ...}.',
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
    "minProperties": 1,
}

# Any operation: a malformed query or body (400), no or a bad token (401), a token or user without
# the right (403), an unknown id or page (404), a client over its rate limit (429).
EVERY_OPERATION = {
    "400": "Malformed request: not JSON, a missing or mistyped field, a bad query parameter",
    "401": "No valid credentials",
    "403": "Authenticated, but not allowed to do this",
    "404": "No such object (or not one this client may see), or no such page",
    "429": "Too many requests; retry after the number of seconds in the Retry-After header",
}
# Only operations that change something and take a body.
WITH_BODY = {
    "409": "The object is not in a state that allows this, or the idempotency key was used with another body",
    "413": "The request body is larger than GATE_MAX_BODY_BYTES",
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}},
    }


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            errors = dict(EVERY_OPERATION)
            if method != "get":
                errors.update(WITH_BODY)
            for code, description in errors.items():
                existing = responses.get(code)
                if existing is None:
                    responses[code] = _error_response(description)
                else:
                    # A view's own description stands; the body is the one error shape.
                    existing["content"] = _error_response(description)["content"]
            if "429" in responses:
                responses["429"]["headers"] = {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}
                }
    return result
