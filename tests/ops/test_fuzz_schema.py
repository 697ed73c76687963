"""The API fuzzed from its own OpenAPI schema (issue: hostile and bad input).

Schemathesis generates requests from /api/schema, valid ones and invalid ones (wrong types, missing
fields, out-of-range values), for every operation, and sends them in-process to the WSGI app (the
same Django handler the ASGI server runs) over the real PostgreSQL test database, as an agent, as a
reviewer and without credentials. Every answer must be: never a 5xx, a status the schema documents
for that operation, the documented content type, a body that matches the documented schema, and a
non-empty JSON object whenever it is an error.

Bounded to ``FUZZ_EXAMPLES`` cases per operation as an agent and as a reviewer, and a third of that
without credentials (default 12: about 500 requests, about a minute). ``FUZZ_EXAMPLES=100`` fuzzes
deeper.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from approvals.api.schema_shapes import error_body_schema
from approvals.gate.policies import policies_import
from approvals.models import ProposedAction, Status
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = WSGIHandler()

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@contextmanager
def _keeping_the_test_transaction() -> Iterator[None]:
    """As Django's test client does: a request must not close the connection that holds the test's
    transaction (the WSGI handler closes old connections when a request starts and finishes)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def identities(db: None, django_capture_on_commit_callbacks: Any, settings: Any) -> dict[str, Any]:
    """An agent with one held action (so ids in paths sometimes exist), a reviewer, no one."""
    # ?wait= is parsed as always, but held for 50 ms at most: nothing is evaluated in here.
    settings.GATE_MAX_WAIT_SECONDS = 0.05
    policies_import(document=TEST_POLICY, actor="test")
    agent = AgentFactory(name="fuzz-agent")
    reviewer = ReviewerFactory(username="fuzz-reviewer")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/actions",
            {"action_type": "refund", "params": {"order_id": "A-1", "amount": 500}, "trajectory": LOOKED_UP},
            format="json",
        )
    held = ProposedAction.objects.get(pk=response.json()["id"])
    assert held.status == Status.NEEDS_REVIEW
    return {
        "held": held,
        "agent": {"Authorization": f"Bearer {agent.token}"},
        "reviewer": {"Authorization": f"Token {Token.objects.create(user=reviewer).key}"},
        "anonymous": {},
    }


def _point_at_real_objects(case: Any, held: ProposedAction) -> None:
    """Half of the generated ids (chosen by the id itself, so that shrinking stays deterministic)
    are replaced by the held action's, so that bodies reach the views and services."""
    params = case.path_parameters or {}
    raw = params.get("action_id")
    if isinstance(raw, str):
        try:
            if uuid.UUID(raw).int % 2 == 0:
                params["action_id"] = str(held.id)
        except ValueError:
            pass


def _assert_error_is_json(response: Any) -> None:
    if response.status_code < 400:
        return
    [content_type] = response.headers.get("content-type", [""])
    assert content_type.startswith("application/json"), response.headers
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    assert body, "an empty error body"


def _call_and_check(case: Any, who: str, identities: dict[str, Any]) -> None:
    _point_at_real_objects(case, identities["held"])
    case.headers = {**(case.headers or {}), **identities[who]}

    with _keeping_the_test_transaction():
        response = case.call()

    case.validate_response(response, checks=CHECKS)
    _assert_error_is_json(response)


def _fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.mark.parametrize("who", ["agent", "reviewer"])
@schema.parametrize()
@_fuzz_settings(FUZZ_EXAMPLES)
def test_every_operation_answers_as_documented(case: Any, who: str, identities: dict[str, Any]) -> None:
    _call_and_check(case, who, identities)


@schema.parametrize()
@_fuzz_settings(max(1, FUZZ_EXAMPLES // 3))
def test_every_operation_answers_anonymous_clients_as_documented(case: Any, identities: dict[str, Any]) -> None:
    _call_and_check(case, "anonymous", identities)


def test_the_schema_documents_every_error_of_every_operation() -> None:
    raw = SchemaGenerator().get_schema(request=None, public=True)
    for path, operations in raw["paths"].items():
        for method, operation in operations.items():
            expected = {"400", "401", "403", "404", "429"} | ({"409", "413"} if method != "get" else set())
            assert expected <= set(operation["responses"]), (method, path)
            for code in expected:
                content = operation["responses"][code]["content"]["application/json"]
                assert content["schema"] == error_body_schema(path, method, code), (method, path, code)
                assert "$ref" in content["schema"] or "anyOf" in content["schema"]


def test_the_served_schema_is_the_generated_one(client: Any) -> None:
    response = client.get("/api/schema", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert "Error" in json.loads(response.content)["components"]["schemas"]
