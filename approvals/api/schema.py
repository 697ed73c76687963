"""The OpenAPI schema, made exact: every operation documents the 4xx answers it can give, each with
the JSON body the exception handler writes (contract §2); the proposal's trajectory, ``wait`` and
``Idempotency-Key`` say what the server accepts; the action operations link to each other.

drf-spectacular postprocessing hooks, so that no view has to repeat them: views document their
success responses and any error they explain specially; these add the rest. The shapes are in
approvals/api/schema_shapes.py.
"""

from __future__ import annotations

from typing import Any

from approvals.api import schema_shapes as shapes

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
METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(result: dict[str, Any]) -> Any:
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method in METHODS:
                yield path, method, operation


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(shapes.ERROR_COMPONENTS)
    for path, method, operation in _operations(result):
        responses = operation.setdefault("responses", {})
        errors = dict(EVERY_OPERATION)
        if method != "get":
            errors.update(WITH_BODY)
        for code, description in errors.items():
            content = {"application/json": {"schema": shapes.error_body_schema(path, method, code)}}
            existing = responses.get(code)
            if existing is None:
                responses[code] = {"description": description, "content": content}
            else:
                # A view's own description stands; the body is the one this status has.
                existing["content"] = content
        if "429" in responses:
            responses["429"]["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}
            }
    return result


def document_proposal(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """The bounds and rules of proposing and waiting: ``wait`` bounded by GATE_MAX_WAIT_SECONDS,
    the Idempotency-Key header tied to the body's key, the trajectory's two forms."""
    for path, method, operation in _operations(result):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] == "wait":
                parameter["schema"] = shapes.wait_parameter_schema()
                parameter["description"] = shapes.wait_description()
            elif parameter["in"] == "header" and parameter["name"] == "Idempotency-Key":
                parameter["schema"] = shapes.idempotency_header_schema()
                parameter["description"] = shapes.IDEMPOTENCY_RULE
        if path == "/api/v1/actions" and method == "post":
            operation["description"] = shapes.IDEMPOTENCY_RULE
    schemas = result.get("components", {}).get("schemas", {})
    if "Propose" in schemas:
        schemas["Propose"]["properties"]["trajectory"] = shapes.trajectory_schema()
    return result


def document_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """OpenAPI links from each answer that is an action to the operations on that action (what a
    client, or a stateful fuzzer, does next with the id it was given)."""
    paths = result.get("paths", {})
    links = {
        name: {"operationId": paths[path][method]["operationId"], "parameters": {"action_id": "$response.body#/id"}}
        for name, (path, method) in shapes.ACTION_LINKS.items()
        if method in paths.get(path, {})
    }
    for path, method, codes in shapes.LINKED_FROM:
        responses = paths.get(path, {}).get(method, {}).get("responses", {})
        for code in codes:
            if code in responses:
                responses[code]["links"] = dict(links)
    return result
