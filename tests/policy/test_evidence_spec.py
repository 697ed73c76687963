"""The evidence fields of a policy (contract §6.1) at the door: lookups, history and identity_params
are checked with their place, exported as written, and URL templates split and render as CEL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cel
import pytest

from approvals import policy
from approvals.policy.builtins import executed_in_trajectory, result_failed
from approvals.policy.evidence import EvidenceError, compile_url, identity_of, split_template, url_value

BASE = {"name": "refund", "params_schema": {"type": "object"}}


def errors_of(**fields: Any) -> list[str]:
    with pytest.raises(policy.PolicyError) as caught:
        policy.parse_action_type({**BASE, **fields}, "refund")
    return caught.value.errors


def test_a_full_evidence_policy_parses_and_exports_as_written() -> None:
    fields = {
        "lookups": [
            {
                "name": "order",
                "url": "https://shop.example/api/orders/{params.order_id}",
                "headers": {"Authorization": "Bearer ${SHOP_TOKEN}"},
                "timeout_ms": 1500,
                "cache_seconds": 30,
            }
        ],
        "history": [
            {
                "name": "refunded_today",
                "window_minutes": 1440,
                "match": {"params.customer_id": "params.customer_id"},
                "statuses": ["auto_approved", "approved"],
                "aggregate": "sum",
                "path": "params.amount",
                "action_type": "",
            }
        ],
        "identity_params": ["order_id", "amount"],
    }
    spec = policy.parse_action_type({**BASE, **fields})
    document = spec.to_document()
    for name, value in fields.items():
        assert document[name] == value
    assert policy.parse_action_type(document) == spec
    plain = policy.parse_action_type(BASE).to_document()
    assert not set(plain) & {"lookups", "history", "identity_params"}  # exported only when set


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"lookups": {"name": "x"}}, "refund.lookups: must be a list"),
        ({"lookups": [{"name": "a-b", "url": "https://x.example/"}]}, "refund.lookups[0].name: must be an identifier"),
        ({"lookups": [{"name": "a", "url": "ftp://x.example/"}]}, "refund.lookups[0].url: must start with http"),
        ({"lookups": [{"name": "a", "url": "https://{params.host}/x"}]}, "refund.lookups[0].url: must start with http"),
        (
            {"lookups": [{"name": "a", "url": "https://x.example/{params.}"}]},
            "refund.lookups[0].url: {params.} invalid CEL",
        ),
        ({"lookups": [{"name": "a", "url": "https://x.example/{params.id"}]}, "refund.lookups[0].url: bad template"),
        ({"lookups": [{"name": "a", "url": "https://x.example/", "timeout_ms": 0}]}, "refund.lookups[0].timeout_ms"),
        ({"lookups": [{"name": "a", "url": "https://x.example/", "verb": "POST"}]}, "refund.lookups[0].verb: unknown"),
        (
            {"lookups": [{"name": "a", "url": "https://x.example/"}, {"name": "a", "url": "https://x.example/"}]},
            "refund.lookups[1].name: duplicate lookup 'a'",
        ),
        ({"history": [{"name": "h"}]}, "refund.history[0].window_minutes: is required"),
        ({"history": [{"name": "h", "window_minutes": 5, "match": {"secret": "1"}}]}, "is not a stored field path"),
        ({"history": [{"name": "h", "window_minutes": 5, "aggregate": "max"}]}, "aggregate: must be one of"),
        ({"history": [{"name": "h", "window_minutes": 5, "aggregate": "sum"}]}, "sum needs the path"),
        ({"history": [{"name": "h", "window_minutes": 5, "statuses": ["done"]}]}, "statuses: must be a non-empty"),
        ({"history": [{"name": "h", "window_minutes": 5, "match": {"params.a": "params.("}}]}, "invalid CEL"),
        ({"identity_params": []}, "refund.identity_params: must be a non-empty list"),
        ({"identity_params": "order_id"}, "refund.identity_params: must be a non-empty list"),
    ],
)
def test_invalid_evidence_fields_are_refused_with_their_place(fields: dict[str, Any], expected: str) -> None:
    errors = errors_of(**fields)
    assert any(expected in error for error in errors), errors


def test_a_rule_may_not_take_the_builtin_name() -> None:
    errors = errors_of(rules=[{"name": "repeat_of_executed", "require": "true"}])
    assert any("reserved" in error for error in errors)


def test_url_templates_split_around_braces_in_strings_and_maps() -> None:
    assert split_template("https://x.example/a/{params.id}?q={'}' + params.q}") == [
        "https://x.example/a/",
        ("params.id",),
        "?q=",
        ("'}' + params.q",),
    ]
    assert split_template("https://x.example/{ {'a': 1}['a'] }") == ["https://x.example/", ("{'a': 1}['a']",)]
    with pytest.raises(ValueError, match="unmatched"):
        split_template("https://x.example/}")


def test_url_values_render_as_written_and_are_encoded() -> None:
    context = cel.Context({"params": {"id": "a/b c?", "n": 3, "f": 2.0, "g": 2.5, "b": True}})
    url = compile_url("https://x.example/{params.id}/{params.n}/{params.f}/{params.g}/{params.b}").render(context)
    assert url == "https://x.example/a%2Fb%20c%3F/3/2/2.5/true"
    for bad in (None, [1], {"a": 1}, float("nan")):
        with pytest.raises(EvidenceError):
            url_value(bad)
    listed = cel.Context({"params": {"flights": [{"n": "HA 1", "d": "2024-05-20"}, {"n": "HA2", "d": "2024-05-21"}]}})
    segments = compile_url("https://x.example/s?segments={params.flights.map(f, f.n + ':' + f.d)}").render(listed)
    assert segments == "https://x.example/s?segments=HA%201%3A2024-05-20,HA2%3A2024-05-21"
    with pytest.raises(EvidenceError):
        compile_url("https://x.example/{[params.flights]}").render(listed)


def test_identity_is_the_params_kept_to_identity_params() -> None:
    params = {"order_id": "A-1", "amount": 20, "note": {"x": 1}}
    assert identity_of(params, None) == params
    assert identity_of(params, ("order_id", "note.x", "missing")) == {"order_id": "A-1", "note.x": 1, "missing": None}


@pytest.mark.parametrize(
    ("result", "failed"),
    [
        ("Error: reservation not found", True),
        ("  error - nope", True),
        ({"error": "not allowed"}, True),
        ({"ok": False}, True),
        ({"success": False}, True),
        ({"status": "FAILED"}, True),
        ({"status": "confirmed", "error": None}, False),
        ('{"reservation_id": "X"}', False),
        ({"reservation_id": "X"}, False),
        (None, False),
        ([], False),
    ],
)
def test_which_tool_results_report_a_failure(result: Any, failed: bool) -> None:
    assert result_failed(result) is failed


def step(tool: str, args: dict[str, Any], result: Any) -> dict[str, Any]:
    return {"kind": "tool_call", "tool": tool, "args": args, "result": result, "role": "assistant", "content": ""}


def test_repeat_of_executed_reads_earlier_successful_calls_in_the_trajectory() -> None:
    args = {"order_id": "A-1", "amount": 20}
    done = [step("get_order", {"order_id": "A-1"}, {}), step("Refund", args, {"refund_id": "R-1"})]
    assert executed_in_trajectory(done, "refund", args, None) == 1
    assert executed_in_trajectory([step("refund", args, "Error: declined")], "refund", args, None) is None
    assert executed_in_trajectory(done, "refund", {**args, "amount": 21}, None) is None
    assert executed_in_trajectory(done, "refund", {**args, "amount": 21}, ("order_id",)) == 1

    spec = policy.parse_action_type({**BASE, "identity_params": ["order_id"]})
    proposal = policy.Proposal(
        sample_key="k",
        action_type="refund",
        params={**args, "amount": 5},
        confidence=None,
        context={},
        agent={"name": "bot"},
        trajectory=done,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    decision = policy.policy_evaluate(policy.compile_policy(spec, 1), proposal)
    assert decision.status == policy.NEEDS_REVIEW
    [repeat] = [f for f in decision.findings if f["rule"] == "repeat_of_executed"]
    assert (repeat["outcome"], repeat["step"]) == ("fail", 1)
    assert "with the same order_id" in repeat["message"]


def test_the_readme_evidence_example_is_a_valid_policy() -> None:
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Evidence the gate gathers itself", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    [item] = yaml.safe_load(block)
    spec = policy.parse_action_type({**item, "params_schema": {"type": "object"}})
    assert [lookup.name for lookup in spec.lookups] == ["order"]
    assert [h.name for h in spec.history] == ["refunded_today"]
    assert spec.identity_params == ("order_id", "amount")
    policy.compile_policy(spec, 1)
