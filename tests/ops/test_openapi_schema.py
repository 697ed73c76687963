"""The OpenAPI schema says exactly what the server accepts and answers (issue 18, part 4): pinned
property by property, validated as drf-spectacular validates it, and the rules it can only describe
(the Idempotency-Key header against the body's key, the wait bound) checked against the server."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator

from approvals.models import ProposedAction
from tests.conftest import LOOKED_UP

ACTION = "/api/v1/actions/{action_id}"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def test_the_schema_validates_without_a_warning() -> None:
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    assert '"openapi": "3.0.3"' in out.getvalue()


def test_params_and_context_are_objects(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    proposal = components["Propose"]["properties"]
    for name in ("params", "context"):
        assert proposal[name]["type"] == "object"
        assert proposal[name]["additionalProperties"] is True
    assert components["Propose"]["required"] == ["action_type", "params"]
    action = components["Action"]["properties"]
    assert action["params"]["type"] == action["context"]["type"] == "object"
    assert action["approved_params"] == {**action["approved_params"], "type": "object", "nullable": True}
    assert components["DecisionInput"]["properties"]["params"]["type"] == "object"


def test_the_idempotency_key_header_is_tied_to_the_body(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/v1/actions"]["post"]
    [header] = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    assert header["schema"] == {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"}
    assert "When both are given they must be equal" in header["description"]
    assert "else 400" in header["description"]
    assert operation["description"] == header["description"]
    body_key = schema["components"]["schemas"]["Propose"]["properties"]["idempotency_key"]
    assert (body_key["minLength"], body_key["maxLength"], body_key["nullable"]) == (1, 255, True)


def test_wait_is_bounded_by_the_server_setting(schema: dict[str, Any]) -> None:
    for path, method in (("/api/v1/actions", "post"), (ACTION, "get")):
        [wait] = [p for p in schema["paths"][path][method]["parameters"] if p["name"] == "wait"]
        assert wait["in"] == "query"
        assert wait["schema"] == {"type": "number", "minimum": 0, "maximum": 30}
        assert "held to 30" in wait["description"]


def test_the_trajectory_has_its_two_forms(schema: dict[str, Any]) -> None:
    trajectory = schema["components"]["schemas"]["Propose"]["properties"]["trajectory"]
    native, openai = trajectory["oneOf"]
    assert native["maxItems"] == openai["properties"]["messages"]["maxItems"] == 1000
    tool_call, message = native["items"]["oneOf"]
    assert tool_call["required"] == ["kind", "tool"]
    assert tool_call["properties"]["tool"] == {"type": "string", "minLength": 1, "maxLength": 200}
    assert message["properties"]["role"]["enum"] == ["user", "assistant", "system", "tool"]
    assert openai["properties"]["format"]["enum"] == ["openai"]


def test_each_error_status_has_its_body(schema: dict[str, Any]) -> None:
    paths, components = schema["paths"], schema["components"]["schemas"]

    def body(path: str, method: str, code: str) -> dict[str, Any]:
        return paths[path][method]["responses"][code]["content"]["application/json"]["schema"]

    assert components["Error"]["required"] == ["detail"]
    assert components["Error"]["additionalProperties"] is False
    assert components["BadRequest"]["anyOf"] == [_ref("Error"), _ref("ValidationErrors")]
    problem = components["ParamsError"]["properties"]["params"]["items"]
    assert problem["required"] == ["path", "message"]
    assert components["ParamsError"]["required"] == ["detail", "params"]
    assert body("/api/v1/actions", "post", "400") == _ref("BadRequest")
    assert body("/api/v1/actions", "post", "409") == _ref("Error")
    assert body("/api/v1/actions", "post", "413") == _ref("Error")
    assert body(f"{ACTION}/decision", "post", "400") == _ref("DecisionBadRequest")
    assert components["DecisionBadRequest"]["anyOf"][0] == _ref("ParamsError")
    assert body("/api/v1/evaluation/sweep/apply", "post", "409") == {
        "anyOf": [_ref("UnsafePolicyChange"), _ref("Error")]
    }


def test_reviewer_and_evaluation_constraints(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    decision = components["DecisionInput"]["properties"]
    assert components[decision["verdict"]["$ref"].rsplit("/", 1)[1]]["enum"] == ["approve", "reject"]
    assert (decision["remember_minutes"]["minimum"], decision["remember_minutes"]["maximum"]) == (1, 1440)
    assert decision["reason"]["maxLength"] == 5000
    label = components["LabelInput"]["properties"]
    assert label["tags"]["maxItems"] == 20
    assert label["tags"]["items"]["pattern"] == "^[A-Za-z0-9_.:-]{1,64}$"
    assert components["OutcomeInput"]["properties"]["params_hash"]["pattern"] == "^[0-9a-f]{64}$"
    thresholds = components["ApplyThresholds"]["properties"]
    assert (thresholds["auto_approve_max_risk"]["minimum"], thresholds["auto_approve_max_risk"]["maximum"]) == (0, 1)
    assert thresholds["max_auto_amount"]["minimum"] == 0
    figures = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/evaluation/figures"]["get"]["parameters"]}
    assert figures["group_by"]["enum"] == ["action_type", "agent", "day"]
    assert figures["since"]["anyOf"] == [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
    ]
    sweep = schema["paths"]["/api/v1/evaluation/sweep"]["get"]["parameters"]
    assert [p["required"] for p in sweep if p["name"] == "action_type"] == [True]


def test_a_proposal_links_to_what_is_done_with_it(schema: dict[str, Any]) -> None:
    links = schema["paths"]["/api/v1/actions"]["post"]["responses"]["201"]["links"]
    assert set(links) == {"GetAction", "CancelAction", "ReportOutcome", "DecideAction", "LabelAction"}
    assert links["GetAction"] == {
        "operationId": schema["paths"][ACTION]["get"]["operationId"],
        "parameters": {"action_id": "$response.body#/id"},
    }
    assert schema["paths"]["/api/v1/actions"]["post"]["responses"]["200"]["links"] == links


@pytest.mark.django_db
def test_the_server_keeps_the_documented_key_rule(policy_v1: int, agent_client: Any) -> None:
    body = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 5}, "trajectory": LOOKED_UP}

    differing = agent_client.post(
        "/api/v1/actions", {**body, "idempotency_key": "k-1"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2"
    )
    assert differing.status_code == 400
    assert differing.json() == {"idempotency_key": ["Differs from the Idempotency-Key header."]}
    assert not ProposedAction.objects.exists()

    blank = agent_client.post("/api/v1/actions", body, format="json", HTTP_IDEMPOTENCY_KEY=" ")
    assert blank.status_code == 400
    assert not ProposedAction.objects.exists()

    header_only = agent_client.post("/api/v1/actions", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    both = agent_client.post(
        "/api/v1/actions", {**body, "idempotency_key": "k-1"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert (header_only.status_code, both.status_code) == (201, 200)
    assert both.json()["id"] == header_only.json()["id"]
    assert ProposedAction.objects.get().idempotency_key == "k-1"

    negative = agent_client.get(f"/api/v1/actions/{header_only.json()['id']}?wait=-1")
    assert negative.status_code == 400
    assert negative.json() == {"wait": ["Must be between 0 and 30 seconds."]}
