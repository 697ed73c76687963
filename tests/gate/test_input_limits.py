"""Bounds on what an agent sends (issue: hostile and bad input): each refused with a clear 400 (or
413) JSON error before anything is stored, and real trajectories (tau-bench airline) well inside.

tests/gate/test_api_agent.py covers the basic malformed requests (not JSON, wrong types, unknown action
types, NaN, 1e400, NUL and surrogate escapes, the body size); this adds the configurable bounds
(GATE_MAX_TRAJECTORY_STEPS, GATE_MAX_JSON_DEPTH, GATE_MAX_STRING_LENGTH), their edges, more
encodings of the same faults, and a property test over arbitrary JSON bodies.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError
from rest_framework.test import APIClient

from approvals.api.parsers import StrictJSONParser, nests_deeper_than
from approvals.api.serializers import MAX_TOOL_NAME_LENGTH, TrajectoryField
from approvals.gate.policies import policies_import
from approvals.models import AuditEvent, ProposedAction
from tests.conftest import LOOKED_UP
from tests.factories import ProposedActionFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
REFUND = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP}


def post_raw(client: APIClient, body: bytes | str) -> Any:
    return client.post("/api/v1/actions", data=body, content_type="application/json")


def refused(response: Any, field: str, *words: str) -> None:
    """A 400 whose JSON body names the field (or "detail") and says why, and nothing stored."""
    assert response.status_code == 400, (response.status_code, response.content[:300])
    body = response.json()
    assert field in body, body
    message = body[field] if isinstance(body[field], str) else " ".join(body[field])
    for word in words:
        assert word in message, message
    assert not ProposedAction.objects.exists()
    assert not AuditEvent.objects.filter(action__isnull=False).exists()


def nested(depth: int) -> Any:
    """A value whose arrays nest ``depth`` deep."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def steps(count: int) -> list[dict]:
    return [{"kind": "tool_call", "tool": "search", "args": {"q": str(i)}, "result": "[]"} for i in range(count)]


# --- trajectory length ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trajectory",
    [
        pytest.param(steps(11), id="native"),
        pytest.param(
            {"format": "openai", "messages": [{"role": "user", "content": f"m{i}"} for i in range(11)]},
            id="openai-messages",
        ),
        # 6 messages, but 12 tool calls: counted after normalising too
        pytest.param(
            {
                "format": "openai",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": f"c{i}{j}", "function": {"name": "search", "arguments": "{}"}} for j in range(2)
                        ],
                    }
                    for i in range(6)
                ],
            },
            id="openai-tool-calls",
        ),
    ],
)
def test_a_trajectory_over_the_step_limit_is_400(policy_v1, agent_client, settings, trajectory):
    settings.GATE_MAX_TRAJECTORY_STEPS = 10

    response = agent_client.post("/api/v1/actions", {**REFUND, "trajectory": trajectory}, format="json")

    refused(response, "trajectory", "steps", "the limit is 10", "GATE_MAX_TRAJECTORY_STEPS")


def test_a_trajectory_at_the_step_limit_is_accepted(policy_v1, agent_client, settings):
    settings.GATE_MAX_TRAJECTORY_STEPS = 10

    response = agent_client.post("/api/v1/actions", {**REFUND, "trajectory": steps(10)}, format="json")

    assert response.status_code == 201, response.json()


def test_the_default_step_limit_takes_a_thousand_steps(policy_v1, agent_client):
    assert django_settings.GATE_MAX_TRAJECTORY_STEPS == 1000

    response = agent_client.post("/api/v1/actions", {**REFUND, "trajectory": steps(1000)}, format="json")

    assert response.status_code == 201, response.json()


def test_a_tool_name_over_the_limit_is_400(policy_v1, agent_client):
    trajectory = [{"kind": "tool_call", "tool": "t" * (MAX_TOOL_NAME_LENGTH + 1), "args": {}}]

    response = agent_client.post("/api/v1/actions", {**REFUND, "trajectory": trajectory}, format="json")

    refused(response, "trajectory", "step 0", "tool name", str(MAX_TOOL_NAME_LENGTH))


def _tau_bench_bodies() -> list[dict]:
    lines = (ROOT / "examples" / "tau_bench_airline" / "proposals.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_tau_bench_airline_proposals_fit_well_inside_every_bound() -> None:
    # given: the 143 real proposals of the tau-bench airline example, as agents would send them
    bodies = _tau_bench_bodies()
    assert len(bodies) > 100

    longest = widest = 0
    for body in bodies:
        raw = json.dumps(body).encode()
        # when: parsed and their trajectories validated as the API does
        parsed = StrictJSONParser().parse(io.BytesIO(raw))
        normalised = TrajectoryField().to_internal_value(parsed["trajectory"])["steps"]
        longest = max(longest, len(normalised))
        assert not nests_deeper_than(raw.decode(), django_settings.GATE_MAX_JSON_DEPTH // 8)
        widest = max(widest, max((len(s) for s in _strings(parsed)), default=0))

    # then: an eighth of each bound, or less
    assert longest * 10 <= django_settings.GATE_MAX_TRAJECTORY_STEPS, longest
    assert widest * 8 <= django_settings.GATE_MAX_STRING_LENGTH, widest


def _strings(value: Any) -> list[str]:
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            found.append(item)
    return found


# --- nesting depth ----------------------------------------------------------------------------------


def test_nesting_one_over_the_limit_is_400(policy_v1, agent_client, settings):
    settings.GATE_MAX_JSON_DEPTH = 10
    # the body is level 1 and params level 2: 9 more arrays make 11
    body = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 1, "x": nested(9)}}

    response = agent_client.post("/api/v1/actions", body, format="json")

    refused(response, "detail", "more than 10 deep")


def test_nesting_at_the_limit_is_accepted(policy_v1, agent_client, settings):
    settings.GATE_MAX_JSON_DEPTH = 10
    body = {"action_type": "refund", "params": {"order_id": "A-1", "amount": 1, "x": nested(8)}}

    response = agent_client.post("/api/v1/actions", body, format="json")

    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("where", ["params", "context", "trajectory"])
def test_deep_nesting_anywhere_is_refused_before_parsing(policy_v1, agent_client, where):
    body = dict(REFUND)
    if where == "trajectory":
        body["trajectory"] = [{"kind": "tool_call", "tool": "t", "args": {"a": nested(100)}}]
    else:
        body[where] = {"a": nested(100)}

    response = agent_client.post("/api/v1/actions", body, format="json")

    refused(response, "detail", f"more than {django_settings.GATE_MAX_JSON_DEPTH} deep")


def test_brackets_inside_strings_are_not_nesting(policy_v1, agent_client):
    text = '[{"\\"' * 2000  # brackets, braces, quotes and escapes, all inside one string
    body = {**REFUND, "rationale": text}

    response = agent_client.post("/api/v1/actions", body, format="json")

    assert response.status_code == 201, response.json()
    assert ProposedAction.objects.get().rationale == text


def test_the_depth_check_of_a_megabyte_of_brackets_is_quick():
    text = "[" * 500_000 + "]" * 500_000

    started = time.perf_counter()
    too_deep = nests_deeper_than(text, django_settings.GATE_MAX_JSON_DEPTH)
    elapsed = time.perf_counter() - started

    assert too_deep
    assert elapsed < 1.0, elapsed


@pytest.mark.parametrize(
    ("text", "deepest"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "]]]]"]', 1),
        ('["\\\\", ["\\"["]]', 2),  # an escaped backslash ends no string; an escaped quote does not end one
        ('[{"k": "}}}"}, [[{}]]]', 4),
    ],
)
def test_the_depth_check_reads_strings_and_escapes(text, deepest):
    assert json.loads(text) is not None
    assert nests_deeper_than(text, deepest - 1)
    assert not nests_deeper_than(text, deepest)


# --- string lengths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"params": {"order_id": "x" * 101, "amount": 1}}, "detail", ("params.order_id", "101 characters")),
        ({"context": {"note": "x" * 101}}, "detail", ("context.note",)),
        ({"context": {"k" * 101: 1}}, "detail", ("(the key)",)),
        ({"params": {"order_id": "A-1", "amount": 1, "tags": ["ok", "x" * 101]}}, "detail", ("params.tags[1]",)),
        (
            {"trajectory": [{"kind": "tool_call", "tool": "get_order", "args": {"q": "x" * 101}}]},
            "detail",
            ("trajectory[0].args.q",),
        ),
        (
            {"trajectory": [{"kind": "tool_call", "tool": "get_order", "args": {}, "result": "x" * 101}]},
            "detail",
            ("trajectory[0].result",),
        ),
        ({"trajectory": [{"kind": "message", "role": "user", "content": "x" * 101}]}, "detail", ("content",)),
    ],
)
def test_a_string_over_the_limit_anywhere_is_400(policy_v1, agent_client, settings, change, field, words):
    settings.GATE_MAX_STRING_LENGTH = 100

    response = agent_client.post("/api/v1/actions", {**REFUND, **change}, format="json")

    refused(response, field, "the limit is 100", *words)


def test_a_string_at_the_limit_is_accepted(policy_v1, agent_client, settings):
    settings.GATE_MAX_STRING_LENGTH = 100

    response = agent_client.post("/api/v1/actions", {**REFUND, "context": {"note": "x" * 100}}, format="json")

    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
        ({"rationale": "r" * 20_001}, "rationale"),
        ({"callback_url": "https://example.com/" + "p" * 2000}, "callback_url"),
    ],
)
def test_envelope_strings_have_their_own_limits(policy_v1, agent_client, change, field):
    response = agent_client.post("/api/v1/actions", {**REFUND, **change}, format="json")

    refused(response, field)


def test_an_idempotency_key_header_over_the_limit_is_400(policy_v1, agent_client):
    response = agent_client.post("/api/v1/actions", REFUND, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)

    refused(response, "idempotency_key")


# --- numbers, constants, encodings --------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "10" + "0" * 400, str(2**63), str(-(2**63) - 1), "9" * 5000],
)
def test_numbers_json_cannot_carry_are_400(policy_v1, agent_client, literal):
    raw = '{"action_type": "refund", "params": {"order_id": "A-1", "amount": 1, "n": [' + literal + "]}}"

    response = post_raw(agent_client, raw)

    refused(response, "detail", "JSON parse error")


@pytest.mark.parametrize("literal", [str(2**63 - 1), str(-(2**63)), "1e308", "-0.0", "1e-400"])
def test_numbers_at_the_edges_are_accepted(policy_v1, agent_client, literal):
    raw = '{"action_type": "refund", "params": {"order_id": "A-1", "amount": 1, "n": ' + literal + "}}"

    response = post_raw(agent_client, raw)

    assert response.status_code == 201, response.json()
    # PostgreSQL's jsonb keeps numbers as numerics: 1e308 comes back as its 309 digits
    assert float(ProposedAction.objects.get().params["n"]) == float(literal)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"action_type": "refund", "params": {"order_id": "\x80"}}', id="lone-continuation-byte"),
        pytest.param(b'{"action_type": "refund", "params": {"order_id": "\xc0\xaf"}}', id="overlong"),
        pytest.param(b'{"action_type": "refund", "params": {"order_id": "\xed\xa0\x80"}}', id="utf8-surrogate"),
        pytest.param(b'{"action_type": "refund", "params": {"order_id": "\xf4\x90\x80\x80"}}', id="above-10ffff"),
        pytest.param(b'{"action_type": "refund", "params": {"order_id": "\xe2\x82"}}', id="truncated"),
        pytest.param('{"action_type": "refund", "params": {}}'.encode("utf-16"), id="utf-16"),
    ],
)
def test_bodies_that_are_not_utf8_are_400(policy_v1, agent_client, raw):
    response = post_raw(agent_client, raw)

    refused(response, "detail", "UTF-8")


@pytest.mark.parametrize(
    "escaped",
    [
        pytest.param('"\\u0000"', id="nul-value"),
        pytest.param('{"\\u0000": 1}', id="nul-key"),
        pytest.param('{"\\udc00": 1}', id="low-surrogate-key"),
        pytest.param('"\\ud800\\ud800"', id="two-high-surrogates"),
        pytest.param('"\\ude00\\ud83d"', id="reversed-pair"),
        pytest.param('["ok", {"deep": ["\\ud83d"]}]', id="nested"),
    ],
)
def test_strings_postgresql_cannot_store_are_400(policy_v1, agent_client, escaped):
    raw = '{"action_type": "refund", "params": {"order_id": "A-1", "amount": 1}, "context": {"v": ' + escaped + "}}"

    response = post_raw(agent_client, raw)

    refused(response, "detail", "JSON parse error")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('\ufeff{"action_type": "refund", "params": {}}', id="bom"),
        pytest.param('{"action_type": "refund", "params": {}} {}', id="two-documents"),
        pytest.param('{"action_type": "refund", "params": {},}', id="trailing-comma"),
        pytest.param("{'action_type': 'refund', 'params': {}}", id="single-quotes"),
        pytest.param('{"action_type": "refund", "params": {"a": 01}}', id="leading-zero"),
        pytest.param('{"action_type": "refund", "params": {"a": "tab\tinside"}}', id="raw-control-character"),
        pytest.param('{"action_type": "refund", "params": {"a": "\\x41"}}', id="bad-escape"),
        pytest.param("[" * 100_000, id="unclosed-brackets"),
        pytest.param('"' + "\\" * 10_001, id="unterminated-string"),
    ],
)
def test_malformed_json_is_400(policy_v1, agent_client, raw):
    response = post_raw(agent_client, raw)

    refused(response, "detail")


def test_duplicate_keys_keep_the_last_as_json_loads_does(policy_v1, agent_client):
    raw = '{"action_type": "refund", "params": {"order_id": "A-1", "amount": 500, "amount": 20}}'

    response = post_raw(agent_client, raw)

    assert response.status_code == 201
    assert ProposedAction.objects.get().params == {"order_id": "A-1", "amount": 20}


def test_the_parser_refuses_with_parse_errors_not_other_exceptions():
    parser = StrictJSONParser()
    for raw in [b"\xff", b"[" * 10_000, b'{"a": NaN}', b'"\\ud800"', b"1" * 5000]:
        with pytest.raises(ParseError):
            parser.parse(io.BytesIO(raw))


# --- arbitrary bodies -------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
ENVELOPE_FIELDS = [
    "action_type",
    "params",
    "idempotency_key",
    "confidence",
    "rationale",
    "context",
    "trajectory",
    "callback_url",
]
PROPOSALS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({}, optional={name: JSON_VALUES for name in ENVELOPE_FIELDS}),
    st.fixed_dictionaries(
        {"action_type": st.sampled_from(["refund", "escalate_ticket", "delete_account", "nope"])},
        optional={name: JSON_VALUES for name in ENVELOPE_FIELDS[1:]},
    ),
)
RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    PROPOSALS.map(lambda v: json.dumps(v).encode()),
    PROPOSALS.map(lambda v: json.dumps(v, ensure_ascii=True).encode()),
)
PROPERTY_SETTINGS = hypothesis_settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(raw=RAW_BODIES)
def test_arbitrary_proposals_never_fail_the_server_and_store_nothing_when_refused(policy_v1, agent_client, raw):
    before = ProposedAction.objects.count(), AuditEvent.objects.count()

    response = post_raw(agent_client, raw)

    assert response.status_code in {200, 201, 400, 403, 409}, (response.status_code, raw[:200])
    body = response.json()
    assert isinstance(body, dict)
    assert body
    if response.status_code >= 400:
        assert (ProposedAction.objects.count(), AuditEvent.objects.count()) == before


@PROPERTY_SETTINGS
@given(raw=RAW_BODIES, path=st.sampled_from(["decision", "labels"]))
def test_arbitrary_reviewer_bodies_never_fail_the_server(reviewer_client, agent, raw, path):
    action = ProposedActionFactory(agent=agent, status="needs_review")
    before = AuditEvent.objects.count()

    response = reviewer_client.post(f"/api/v1/actions/{action.id}/{path}", data=raw, content_type="application/json")

    assert response.status_code in {200, 201, 400, 409}, (response.status_code, raw[:200])
    assert isinstance(response.json(), dict)
    if response.status_code >= 400:
        assert AuditEvent.objects.count() == before
        action.refresh_from_db()
        assert action.status == "needs_review"


# --- CEL rules cannot run away ----------------------------------------------------------------------

CUBIC = "trajectory.exists(a, trajectory.exists(b, trajectory.exists(c, a.tool == b.tool + c.tool)))"
# every step is looked for among all the steps: half a million comparisons over 1,000 distinct steps
QUADRATIC = "trajectory.all(a, trajectory.exists(b, b.args == a.args))"
# Accepted at import (a filter is expected to keep a tenth of the steps), but every step of
# steps() is a search: the filter keeps all 1,000 and copies the list it builds at each one.
SLIPS_THROUGH = "trajectory.filter(s, s.tool == 'search').size() >= 0"


def _policy_with(require: str | list[str]) -> dict[str, Any]:
    requires = [require] if isinstance(require, str) else require
    return {
        "version": 1,
        "action_types": [
            {
                "name": "refund",
                "params_schema": {"type": "object"},
                "rules": [{"name": f"rule_{i}", "require": text} for i, text in enumerate(requires)],
            }
        ],
    }


@pytest.mark.parametrize(
    ("require", "words"),
    [
        pytest.param(
            CUBIC,
            ("rules[0].require", "rule 'rule_0' is estimated to take", "1,000 steps", "GATE_EVALUATION_BUDGET_MS"),
            id="cubic",
        ),
        pytest.param(QUADRATIC, ("rules[0].require", "is estimated to take", "1,000 steps"), id="quadratic"),
        pytest.param(
            "[1].all(a, " * 17 + "true" + ")" * 17,
            ("rules[0].require", "17 deep", "at most 16"),
            id="deep-comprehensions",
        ),
        pytest.param("true && " * 600 + "true", ("rules[0].require", "longer than 4000"), id="long"),
        pytest.param("(" * 200 + "true" + ")" * 200, ("rules[0].require", "invalid CEL"), id="deep-parentheses"),
        pytest.param(["true"] * 201, ("201 rules", "at most 200"), id="too-many-rules"),
    ],
)
def test_a_pathological_rule_is_refused_at_import_and_nothing_changes(require, words):
    pass
    from approvals.models import ActionType, PolicyVersion
    from approvals.policy import PolicyError

    with pytest.raises(PolicyError) as caught:
        policies_import(document=_policy_with(require), actor="test")

    message = "; ".join(caught.value.errors)
    for word in words:
        assert word in message, message
    assert not ActionType.objects.exists()
    assert not PolicyVersion.objects.exists()


def test_the_admin_refuses_a_pathological_rule(client):
    from approvals.models import Rule
    from tests.factories import UserFactory
    from tests.test_admin import form

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    response = client.post("/admin/approvals/actiontype/add/", form(**{"rules-0-require": CUBIC}))

    assert response.status_code == 200
    assert "is estimated to take" in response.content.decode()
    assert not Rule.objects.exists()


def test_real_policies_are_accepted():
    import yaml

    from approvals.policy import parse_document

    for name in ["policies/demo.yaml", "examples/tau_bench_airline/policy.yaml"]:
        assert parse_document(yaml.safe_load((ROOT / name).read_text()))


def test_an_expensive_rule_over_a_maximal_trajectory_past_the_budget_holds_the_action(
    agent_client, settings, django_capture_on_commit_callbacks
):
    pass

    # given: an allowed rule that runs long on this input, the longest trajectory the API takes, and
    # a 5 ms budget
    policies_import(document=_policy_with([SLIPS_THROUGH, "true"]), actor="test")
    settings.GATE_EVALUATION_BUDGET_MS = 5
    body = {"action_type": "refund", "params": {}, "trajectory": steps(django_settings.GATE_MAX_TRAJECTORY_STEPS)}

    # when: proposed and evaluated (in-process, on commit)
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post("/api/v1/actions", body, format="json")
    assert response.status_code == 201

    # then: held for a person, never approved, with a finding that names the budget
    action = ProposedAction.objects.get()
    assert action.status == "needs_review"
    errors = [f for f in action.findings if f["outcome"] == "error"]
    assert errors, action.findings
    assert any("GATE_EVALUATION_BUDGET_MS" in f["message"] and "5 ms" in f["message"] for f in errors), errors


# --- query strings (found by the schema fuzzer and the probes after it) -----------------------------

QUERY_PAGES = [
    "/api/v1/review/queue?action_type=%00",
    "/api/v1/remembered-approvals?session_id=%00",
    "/api/v1/evaluation/summary?action_type=%00",
    "/api/v1/evaluation/figures?action_type=%00&agent=%00",
    "/api/v1/evaluation/rules?action_type=%00",
    "/api/v1/evaluation/sweep?action_type=%00",
    "/api/v1/evaluation/export.csv?action_type=%00",
    "/review/?q=%00",
    "/review/?agent=%00",
    "/evaluation/?action_type=%00",
    "/admin/approvals/proposedaction/?q=%00",
]


@pytest.mark.parametrize("url", QUERY_PAGES)
def test_a_nul_in_the_query_string_is_400_not_a_server_error(policy_v1, client, url):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    response = client.get(url)

    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/evaluation/summary?since=3922-03-27T08:31:32.1-21:18",
        "/api/v1/evaluation/figures?since=2987-07-07T15:35:00-08:34&until=3731-10-30T07:41:06%2B22:40",
        "/api/v1/evaluation/export.jsonl?since=9999-12-31T23:59:59-23:59",
        "/api/v1/evaluation/agents?until=0001-01-01T00:00:00%2B23:59",
    ],
)
def test_offsets_postgresql_refuses_are_converted_or_refused_never_a_server_error(policy_v1, reviewer_client, url):
    response = reviewer_client.get(url)

    assert response.status_code in {200, 400}, response.content[:300]
    if response.status_code == 400:
        assert "Out of range" in json.dumps(response.json())
