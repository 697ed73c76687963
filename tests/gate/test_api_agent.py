"""Contract §2: the agent API, against the real database and Redis."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from approvals.gate.api import wait_seconds
from approvals.models import ActionType, AuditEvent, Decision, ProposedAction, Status
from tests.conftest import LOOKED_UP
from tests.factories import AgentFactory, ProposedActionFactory, ReviewerFactory

pytestmark = pytest.mark.django_db

REFUND = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP}
REPRESENTATION_FIELDS = {
    "id",
    "url",
    "review_url",
    "action_type",
    "status",
    "params",
    "context",
    "confidence",
    "idempotency_key",
    "risk_score",
    "findings",
    "decision",
    "policy_version",
    "created_at",
    "decided_at",
}


def client_for(agent: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    return client


def post_raw(client: APIClient, body: bytes | str, query: str = "") -> Any:
    return client.post(f"/api/v1/actions{query}", data=body, content_type="application/json")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- proposing --------------------------------------------------------------------------------------


def test_propose_returns_201_and_a_pending_or_evaluated_action(policy_v1, propose):
    # when
    response = propose(REFUND)

    # then
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] in (Status.PENDING, Status.AUTO_APPROVED)
    assert response.action["status"] == Status.AUTO_APPROVED
    assert ProposedAction.objects.filter(pk=body["id"]).exists()


def test_representation_has_every_contract_field(policy_v1, propose):
    # given
    body = {
        **REFUND,
        "idempotency_key": "run-1/step-1",
        "confidence": 0.92,
        "context": {"ticket_id": "T-88"},
        "rationale": "damaged item",
    }

    # when
    action = propose(body).action

    # then
    assert action.keys() >= REPRESENTATION_FIELDS
    action_id = action["id"]
    assert uuid.UUID(action_id)
    assert action["url"] == f"/api/v1/actions/{action_id}"
    assert action["review_url"] == f"/review/{action_id}"
    assert action["action_type"] == "refund"
    assert action["status"] == "auto_approved"
    assert action["params"] == {"order_id": "A-1", "amount": 20}
    assert action["context"] == {"ticket_id": "T-88"}
    assert action["confidence"] == 0.92
    assert action["idempotency_key"] == "run-1/step-1"
    assert action["risk_score"] == pytest.approx(0.1)
    assert action["policy_version"] == policy_v1
    assert parse_time(action["created_at"]) <= parse_time(action["decided_at"])
    decision = action["decision"]
    assert decision["verdict"] == "approve"
    assert decision["by"] == "policy"
    assert isinstance(decision["reason"], str)
    assert decision["reason"]
    assert parse_time(decision["at"])
    assert action["findings"]
    for finding in action["findings"]:
        assert {"rule", "outcome", "effect", "message"} <= finding.keys()
        assert finding["outcome"] in ("pass", "fail", "error")
        assert finding["effect"] in ("none", "review", "block", "risk")
        if finding["outcome"] == "pass":
            assert finding["effect"] == "none"
    assert any(f["rule"] == "order_was_looked_up" and f["outcome"] == "pass" for f in action["findings"])


def test_optional_fields_default_to_null_or_empty(policy_v1, propose):
    action = propose({"action_type": "escalate_ticket", "params": {}}).action

    assert action["confidence"] is None
    assert action["idempotency_key"] is None
    assert action["context"] == {}
    assert action["decision"] is None
    assert action["decided_at"] is None


def test_held_action_has_findings_risk_and_no_decision(policy_v1, propose):
    # given a refund for an order the agent never looked up
    action = propose({"action_type": "refund", "params": {"order_id": "A-9", "amount": 20}}).action

    # then
    assert action["status"] == "needs_review"
    assert action["decision"] is None
    assert action["decided_at"] is None
    assert action["risk_score"] == pytest.approx(0.1)
    [rule] = [f for f in action["findings"] if f["rule"] == "order_was_looked_up"]
    assert rule == {
        "rule": "order_was_looked_up",
        "outcome": "fail",
        "effect": "review",
        "message": "Refund for an order the agent never looked up",
    }


def test_amount_above_limit_is_held(policy_v1, propose):
    action = propose({**REFUND, "params": {"order_id": "A-1", "amount": 500}}).action

    assert action["status"] == "needs_review"
    assert any(f["rule"] == "amount" and f["outcome"] == "fail" for f in action["findings"])


def test_mode_review_type_needs_review(policy_v1, propose):
    response = propose({"action_type": "escalate_ticket", "params": {"ticket_id": "T-1"}})

    assert response.status_code == 201
    assert response.action["status"] == "needs_review"
    assert any(f["rule"] == "mode" and f["effect"] == "review" for f in response.action["findings"])


def test_mode_block_type_is_blocked_by_policy(policy_v1, propose):
    action = propose({"action_type": "delete_account", "params": {"customer_id": "C-1"}}).action

    assert action["status"] == "blocked"
    assert action["decision"]["verdict"] == "reject"
    assert action["decision"]["by"] == "policy"
    assert action["decided_at"] is not None


def test_params_failing_the_schema_are_stored_and_blocked(policy_v1, propose):
    # when the params break two constraints of the refund schema
    response = propose({"action_type": "refund", "params": {"order_id": 7, "amount": -5}, "trajectory": LOOKED_UP})

    # then the call is on record, and blocked with one finding per schema error
    assert response.status_code == 201, response.json()
    action = response.action
    assert action["status"] == "blocked"
    assert action["decision"] == {**action["decision"], "verdict": "reject", "by": "policy"}
    schema = [f for f in action["findings"] if f["rule"] == "params_schema"]
    assert {f["path"] for f in schema} == {"/order_id", "/amount"}
    for finding in schema:
        assert finding["outcome"] == "fail"
        assert finding["effect"] == "block"
        assert finding["message"]


def test_missing_required_param_is_a_schema_finding(policy_v1, propose):
    action = propose({"action_type": "refund", "params": {"order_id": "A-1"}}).action

    assert action["status"] == "blocked"
    [finding] = [f for f in action["findings"] if f["rule"] == "params_schema"]
    assert finding["path"] == "/"
    assert "amount" in finding["message"]


def test_openai_trajectory_is_accepted_and_normalised(policy_v1, propose):
    # given an OpenAI chat-completions transcript that looks up the order
    trajectory = {
        "format": "openai",
        "messages": [
            {"role": "system", "content": "You are a support agent."},
            {"role": "user", "content": "My order A-1 arrived broken"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_order", "arguments": '{"order_id": "A-1"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"total": 80}'},
            {"role": "assistant", "content": "I will refund 20."},
        ],
    }

    # when
    response = propose({**REFUND, "trajectory": trajectory})

    # then the rule sees the tool call, and both forms are stored
    assert response.status_code == 201, response.json()
    assert response.action["status"] == "auto_approved"
    stored = ProposedAction.objects.get(pk=response.action["id"])
    assert stored.trajectory_raw == trajectory
    assert stored.trajectory == [
        {
            "kind": "message",
            "tool": "",
            "args": {},
            "result": None,
            "role": "system",
            "content": "You are a support agent.",
        },
        {
            "kind": "message",
            "tool": "",
            "args": {},
            "result": None,
            "role": "user",
            "content": "My order A-1 arrived broken",
        },
        {
            "kind": "tool_call",
            "tool": "get_order",
            "args": {"order_id": "A-1"},
            "result": {"total": 80},
            "role": "assistant",
            "content": "",
        },
        {
            "kind": "message",
            "tool": "",
            "args": {},
            "result": None,
            "role": "assistant",
            "content": "I will refund 20.",
        },
    ]


def test_native_trajectory_is_stored_as_given_and_normalised(policy_v1, propose):
    response = propose(REFUND)

    stored = ProposedAction.objects.get(pk=response.action["id"])
    assert stored.trajectory_raw == LOOKED_UP
    assert stored.trajectory[1]["result"] == {"total": 80}
    assert stored.trajectory[0] == {
        "kind": "message",
        "tool": "",
        "args": {},
        "result": None,
        "role": "user",
        "content": "My order A-1 arrived broken",
    }


def test_propose_records_an_audit_event(policy_v1, propose, agent):
    response = propose(REFUND)

    proposed = AuditEvent.objects.get(action_id=response.action["id"], event="proposed")
    assert proposed.actor == f"agent:{agent.name}"
    assert proposed.to_status == "pending"


# --- idempotency ------------------------------------------------------------------------------------


def test_replay_with_same_key_and_body_returns_the_same_action(policy_v1, propose):
    # given
    first = propose({**REFUND, "idempotency_key": "k-1"})

    # when
    replay = propose({**REFUND, "idempotency_key": "k-1"})

    # then
    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["status"] == "auto_approved"
    assert ProposedAction.objects.count() == 1


def test_key_in_header_replays_key_in_body(policy_v1, propose):
    # given the key sent in the body
    first = propose({**REFUND, "idempotency_key": "k-2"})

    # when the same request comes again with the key as a header
    replay = propose(REFUND, HTTP_IDEMPOTENCY_KEY="k-2")

    # then the key is not part of the comparison
    assert replay.status_code == 200, replay.json()
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["idempotency_key"] == "k-2"
    assert ProposedAction.objects.count() == 1


def test_key_in_body_replays_key_in_header(policy_v1, propose):
    first = propose(REFUND, HTTP_IDEMPOTENCY_KEY="k-3")
    replay = propose({**REFUND, "idempotency_key": "k-3"})

    assert first.status_code == 201
    assert first.json()["idempotency_key"] == "k-3"
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]


def test_replay_compares_parsed_json_not_bytes(policy_v1, agent_client):
    # given two encodings of the same object: other key order, other spacing
    first = post_raw(
        agent_client, '{"action_type":"refund","params":{"order_id":"A-1","amount":20},"idempotency_key":"k-4"}'
    )
    replay = post_raw(
        agent_client,
        '{ "idempotency_key" : "k-4", "params" : { "amount" : 20, "order_id" : "A-1" }, "action_type" : "refund" }',
    )

    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]


def test_same_key_different_body_conflicts_and_stores_nothing(policy_v1, propose):
    # given
    first = propose({**REFUND, "idempotency_key": "k-5"})

    # when
    other = propose({**REFUND, "params": {"order_id": "A-1", "amount": 21}, "idempotency_key": "k-5"})

    # then
    assert other.status_code == 409
    assert "detail" in other.json()
    assert list(ProposedAction.objects.values_list("id", flat=True)) == [uuid.UUID(first.json()["id"])]
    assert ProposedAction.objects.get().params["amount"] == 20


def test_same_key_different_optional_field_conflicts(policy_v1, propose):
    propose({**REFUND, "idempotency_key": "k-6"})

    other = propose({**REFUND, "idempotency_key": "k-6", "confidence": 0.5})

    assert other.status_code == 409
    assert ProposedAction.objects.count() == 1


def test_same_key_from_two_agents_makes_two_actions(policy_v1, propose):
    other_agent = AgentFactory()

    first = propose({**REFUND, "idempotency_key": "shared"})
    second = propose({**REFUND, "idempotency_key": "shared"}, client=client_for(other_agent))

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


def test_no_key_makes_a_new_action_each_time(policy_v1, propose):
    first = propose(REFUND)
    second = propose(REFUND)

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


def test_header_and_body_keys_that_differ_are_refused(policy_v1, agent_client):
    response = agent_client.post(
        "/api/v1/actions", {**REFUND, "idempotency_key": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="b"
    )

    assert response.status_code == 400
    assert "idempotency_key" in response.json()
    assert not ProposedAction.objects.exists()


# --- authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Bearer", "Bearer a b"])
def test_without_a_valid_token_401(policy_v1, authorization):
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.post("/api/v1/actions", REFUND, format="json")

    assert response.status_code == 401
    assert "detail" in response.json()
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not ProposedAction.objects.exists()


def test_get_without_token_401(policy_v1, propose):
    action_id = propose(REFUND).json()["id"]

    response = APIClient().get(f"/api/v1/actions/{action_id}")

    assert response.status_code == 401
    assert "detail" in response.json()


def test_token_is_stored_only_as_a_hash(agent):
    stored = type(agent).objects.get(pk=agent.pk)
    assert agent.token not in (stored.token_hash, stored.token_prefix)
    assert len(stored.token_hash) == 64


# --- malformed requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("{not json", "detail"),
        ("", None),
        ("[1, 2]", "detail"),
        ('"refund"', "detail"),
        ("null", "detail"),
        ('{"params": {}}', "action_type"),
        ('{"action_type": "refund"}', "params"),
        ('{"action_type": "refund", "params": [1]}', "params"),
        ('{"action_type": "refund", "params": "x"}', "params"),
        ('{"action_type": "refund", "params": null}', "params"),
        ('{"action_type": "no_such_type", "params": {}}', "action_type"),
        ('{"action_type": ["refund"], "params": {}}', "action_type"),
        ('{"action_type": "refund", "params": {}, "confidence": 1.5}', "confidence"),
        ('{"action_type": "refund", "params": {}, "confidence": -0.1}', "confidence"),
        ('{"action_type": "refund", "params": {}, "confidence": true}', "confidence"),
        ('{"action_type": "refund", "params": {}, "confidence": "high"}', "confidence"),
        ('{"action_type": "refund", "params": {}, "confidence": "0.9"}', "confidence"),
        ('{"action_type": "refund", "params": {}, "confidence": NaN}', "detail"),
        ('{"action_type": "refund", "params": {}, "confidence": Infinity}', "detail"),
        ('{"action_type": "refund", "params": {}, "context": [1]}', "context"),
        ('{"action_type": "refund", "params": {}, "idempotency_key": 12}', "idempotency_key"),
        ('{"action_type": "refund", "params": {}, "idempotency_key": ""}', "idempotency_key"),
        ('{"action_type": "refund", "params": {}, "rationale": {"a": 1}}', "rationale"),
        ('{"action_type": "refund", "params": {}, "rationale": 5}', "rationale"),
        ('{"action_type": "refund", "params": {}, "callback_url": "not a url"}', "callback_url"),
        ('{"action_type": "refund", "params": {}, "trajectory": "looked it up"}', "trajectory"),
        # Never a 500: what PostgreSQL cannot store is refused when parsing.
        ('{"action_type": "refund", "params": {"order_id": "A\\u0000", "amount": 1}}', "detail"),
        ('{"action_type": "refund", "params": {}, "context": {"k\\u0000": 1}}', "detail"),
        ('{"action_type": "refund\\u0000", "params": {}}', "detail"),
        (
            '{"action_type": "refund", "params": {}, "trajectory": [{"kind": "message", "content": "\\u0000"}]}',
            "detail",
        ),
        ('{"action_type": "refund", "params": {"order_id": "\\ud800", "amount": 1}}', "detail"),
        ('{"action_type": "refund", "params": {"order_id": "A", "amount": 1e400}}', "detail"),
        ('{"action_type": "refund", "params": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}", "detail"),
    ],
)
def test_malformed_request_400_with_json_body_and_nothing_stored(policy_v1, agent_client, raw, field):
    response = post_raw(agent_client, raw)

    assert response.status_code == 400, response.content
    body = response.json()
    assert isinstance(body, dict)
    assert body
    if field is not None:
        assert field in body, body
    assert not ProposedAction.objects.exists()


@pytest.mark.parametrize(
    ("trajectory", "path"),
    [
        ([{"kind": "tool_call", "args": {}}], "trajectory[0].tool"),
        ([LOOKED_UP[0], {"kind": "thinking"}], "trajectory[1].kind"),
        ([{"kind": "message", "role": "robot", "content": "hi"}], "trajectory[0].role"),
        ([{"kind": "tool_call", "tool": "get_order", "args": [1]}], "trajectory[0].args"),
        (["step"], "trajectory[0]"),
        ({"format": "anthropic", "messages": []}, "trajectory.format"),
        ({"format": "openai"}, "trajectory.messages"),
        ({"format": "openai", "messages": [{"role": "robot"}]}, "trajectory.messages[0].role"),
        (
            {"format": "openai", "messages": [{"role": "assistant", "tool_calls": [{"id": "x"}]}]},
            "trajectory.messages[0].tool_calls[0]",
        ),
    ],
)
def test_bad_trajectory_400_names_the_path(policy_v1, agent_client, trajectory, path):
    response = agent_client.post("/api/v1/actions", {**REFUND, "trajectory": trajectory}, format="json")

    assert response.status_code == 400
    [message] = response.json()["trajectory"]
    assert message.startswith(f"{path}:"), message
    assert not ProposedAction.objects.exists()


def test_escapes_that_postgres_can_store_are_accepted(policy_v1, agent_client):
    # a literal backslash before "u0000", and a surrogate pair (an emoji)
    raw = '{"action_type": "refund", "params": {"order_id": "A\\\\u0000 \\ud83d\\ude00", "amount": 1}}'
    assert json.loads(raw)["params"]["order_id"] == "A\\u0000 \U0001f600"

    response = post_raw(agent_client, raw)

    assert response.status_code == 201, response.json()
    assert ProposedAction.objects.get().params["order_id"] == "A\\u0000 \U0001f600"


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/x-www-form-urlencoded"])
def test_body_not_sent_as_json_is_400(policy_v1, agent_client, content_type):
    body = json.dumps(REFUND).encode()

    response = agent_client.generic("POST", "/api/v1/actions", body, content_type=content_type)

    assert response.status_code == 400
    assert "application/json" in response.json()["detail"]
    assert not ProposedAction.objects.exists()


def test_invalid_utf8_is_400(policy_v1, agent_client):
    response = post_raw(agent_client, b'{"action_type": "refund", "params": {"order_id": "\xff\xfe", "amount": 1}}')

    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"]
    assert not ProposedAction.objects.exists()


@pytest.mark.parametrize("wait", ["abc", "-1", "nan", "inf"])
def test_bad_wait_on_propose_is_400_and_stores_nothing(policy_v1, agent_client, wait):
    response = agent_client.post(f"/api/v1/actions?wait={wait}", REFUND, format="json")

    assert response.status_code == 400
    assert "wait" in response.json()
    assert not ProposedAction.objects.exists()


def test_malformed_request_is_checked_before_permissions(policy_v1):
    # given a disabled agent and a reviewer, both sending a malformed body
    disabled = AgentFactory(enabled=False)
    reviewer_client = APIClient()
    reviewer_client.force_authenticate(ReviewerFactory())

    # then both get 400, not 403
    assert post_raw(client_for(disabled), "[]").status_code == 400
    assert post_raw(reviewer_client, '{"params": {}}').status_code == 400


def test_body_over_the_limit_is_413_json(policy_v1, agent_client, settings):
    # given
    settings.GATE_MAX_BODY_BYTES = 300
    body = {**REFUND, "rationale": "x" * 400}

    # when
    response = agent_client.post("/api/v1/actions", body, format="json")

    # then
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()
    assert not ProposedAction.objects.exists()


def test_body_under_the_limit_passes(policy_v1, propose, settings):
    settings.GATE_MAX_BODY_BYTES = len(json.dumps(REFUND)) + 100

    assert propose(REFUND).status_code == 201


# --- permissions ------------------------------------------------------------------------------------


def test_disabled_agent_403(policy_v1):
    client = client_for(AgentFactory(enabled=False))

    response = client.post("/api/v1/actions", REFUND, format="json")

    assert response.status_code == 403
    assert "disabled" in response.json()["detail"]
    assert not ProposedAction.objects.exists()


def test_disabled_action_type_403(policy_v1, agent_client):
    ActionType.objects.filter(name="refund").update(enabled=False)

    response = agent_client.post("/api/v1/actions", REFUND, format="json")

    assert response.status_code == 403
    assert "refund" in response.json()["detail"]
    assert not ProposedAction.objects.exists()


def test_type_the_agent_may_not_propose_403(policy_v1, propose):
    # given an agent limited to escalate_ticket
    limited = AgentFactory(all_action_types=False)
    limited.action_types.set(ActionType.objects.filter(name="escalate_ticket"))
    client = client_for(limited)

    # when / then
    refused = client.post("/api/v1/actions", REFUND, format="json")
    assert refused.status_code == 403
    assert "detail" in refused.json()
    assert not ProposedAction.objects.exists()
    assert propose({"action_type": "escalate_ticket", "params": {}}, client=client).status_code == 201


def test_agent_with_all_types_may_propose_types_created_later(policy_v1, propose, agent):
    ActionType.objects.create(name="send_email", params_schema={"type": "object"}, policy_version=policy_v1)

    response = propose({"action_type": "send_email", "params": {"to": "a@example.com"}})

    assert response.status_code == 201
    assert response.action["status"] == "auto_approved"


def test_reviewer_token_cannot_propose(policy_v1, reviewer_client):
    response = reviewer_client.post("/api/v1/actions", REFUND, format="json")

    assert response.status_code == 403
    assert "detail" in response.json()
    assert not ProposedAction.objects.exists()


# --- reading an action --------------------------------------------------------------------------------


def test_get_own_action(policy_v1, propose, agent_client):
    created = propose(REFUND).json()

    response = agent_client.get(created["url"])

    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    assert response.json()["status"] == "auto_approved"


def test_get_another_agents_action_404(policy_v1, propose):
    created = propose(REFUND).json()

    response = client_for(AgentFactory()).get(created["url"])

    assert response.status_code == 404
    assert "detail" in response.json()


def test_get_unknown_action_404(policy_v1, agent_client):
    response = agent_client.get(f"/api/v1/actions/{uuid.uuid4()}")

    assert response.status_code == 404
    assert "detail" in response.json()


def test_disabled_agent_cannot_read_403(policy_v1, propose, agent, agent_client):
    created = propose(REFUND).json()
    type(agent).objects.filter(pk=agent.pk).update(enabled=False)

    assert agent_client.get(created["url"]).status_code == 403


# --- ?wait= -------------------------------------------------------------------------------------------


def _request(query: str) -> Request:
    return Request(APIRequestFactory().get(f"/api/v1/actions/x{query}"))


@pytest.mark.parametrize(
    ("query", "seconds"), [("", 0.0), ("?wait=", 0.0), ("?wait=0", 0.0), ("?wait=2.5", 2.5), ("?wait=30", 30.0)]
)
def test_wait_within_bounds(query, seconds):
    assert wait_seconds(_request(query)) == seconds


@pytest.mark.parametrize("value", ["31", "1000", "1e9"])
def test_wait_above_30_is_taken_as_30(value):
    assert wait_seconds(_request(f"?wait={value}")) == 30.0


def test_wait_above_30_is_accepted_by_get(policy_v1, propose, agent_client):
    created = propose(REFUND).json()

    started = time.monotonic()
    response = agent_client.get(f"{created['url']}?wait=1000")

    # a final action comes back at once
    assert response.status_code == 200
    assert response.json()["status"] == "auto_approved"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("wait", ["-1", "abc"])
def test_bad_wait_on_get_is_400(policy_v1, propose, agent_client, wait):
    created = propose(REFUND).json()

    response = agent_client.get(f"{created['url']}?wait={wait}")

    assert response.status_code == 400
    assert "wait" in response.json()


def test_wait_holds_get_of_an_undecided_action(policy_v1, agent, agent_client):
    # given an action nobody evaluates (on-commit callbacks do not run in this test)
    response = agent_client.post("/api/v1/actions", REFUND, format="json")
    assert response.json()["status"] == "pending"

    # when
    started = time.monotonic()
    held = agent_client.get(f"{response.json()['url']}?wait=0.6")

    # then it waited, and came back with the action as it stands
    assert time.monotonic() - started >= 0.5
    assert held.status_code == 200
    assert held.json()["status"] == "pending"


def test_wait_holds_a_propose_until_the_time_is_up(policy_v1, agent_client):
    # given no evaluation can happen (on-commit callbacks do not run in this test)
    started = time.monotonic()

    # when
    response = agent_client.post("/api/v1/actions?wait=0.6", REFUND, format="json")

    # then
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 201
    assert response.json()["status"] == "pending"


@pytest.mark.django_db(transaction=True)
def test_propose_with_wait_answers_with_the_evaluated_action(policy_v1, agent_client):
    # given real commits: the evaluation runs on commit, before the response is written
    started = time.monotonic()

    # when the wait asked for is above the 30 s bound
    response = agent_client.post("/api/v1/actions?wait=1000", REFUND, format="json")

    # then it is accepted, and the answer comes as soon as the action is evaluated
    assert response.status_code == 201
    assert response.json()["status"] == "auto_approved"
    assert response.json()["decision"]["by"] == "policy"
    assert time.monotonic() - started < 10


# --- cancelling -----------------------------------------------------------------------------------------


def test_cancel_pending_action(policy_v1, agent, agent_client):
    # given an action still pending (its evaluation never ran)
    action_id = agent_client.post("/api/v1/actions", REFUND, format="json").json()["id"]

    # when
    response = agent_client.post(f"/api/v1/actions/{action_id}/cancel")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == action_id
    assert body["status"] == "cancelled"
    assert body["decision"] is None
    assert ProposedAction.objects.get(pk=action_id).status == Status.CANCELLED
    event = AuditEvent.objects.get(action_id=action_id, event="cancelled")
    assert (event.actor, event.from_status, event.to_status) == (f"agent:{agent.name}", "pending", "cancelled")


def test_cancel_needs_review_action(policy_v1, propose, agent_client):
    created = propose({"action_type": "escalate_ticket", "params": {}})
    assert created.action["status"] == "needs_review"

    response = agent_client.post(f"{created.action['url']}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["decision"] is None


@pytest.mark.parametrize("status", [s for s in Status.values if s not in ("pending", "needs_review")])
def test_cancel_final_action_409(policy_v1, agent, agent_client, status):
    action = ProposedActionFactory(agent=agent, action_type=ActionType.objects.get(name="refund"), status=status)

    response = agent_client.post(f"/api/v1/actions/{action.id}/cancel")

    assert response.status_code == 409
    assert "detail" in response.json()
    action.refresh_from_db()
    assert action.status == status


def test_cancel_another_agents_action_404(policy_v1, agent_client):
    action = ProposedActionFactory(action_type=ActionType.objects.get(name="refund"), status=Status.NEEDS_REVIEW)

    response = agent_client.post(f"/api/v1/actions/{action.id}/cancel")

    assert response.status_code == 404
    action.refresh_from_db()
    assert action.status == Status.NEEDS_REVIEW


def test_cancel_unknown_action_404(policy_v1, agent_client):
    assert agent_client.post(f"/api/v1/actions/{uuid.uuid4()}/cancel").status_code == 404


def test_cancelled_pending_action_is_not_evaluated_afterwards(
    policy_v1, agent_client, django_capture_on_commit_callbacks
):
    # given a pending action whose queued evaluation has not run yet
    with django_capture_on_commit_callbacks() as queued:
        action_id = agent_client.post("/api/v1/actions", REFUND, format="json").json()["id"]
    agent_client.post(f"/api/v1/actions/{action_id}/cancel")

    # when the evaluation runs late
    for callback in queued:
        callback()

    # then the cancel stands
    action = ProposedAction.objects.get(pk=action_id)
    assert action.status == Status.CANCELLED
    assert not Decision.objects.filter(action_id=action_id).exists()


def test_an_api_path_that_matches_nothing_is_a_json_404(agent_client) -> None:
    response = agent_client.get("/api/v1/actions/not-a-uuid")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
