"""Lookups (contract §6.1) against a real HTTP server on loopback: what the gate fetches, how each
failure holds the action, the address guard, headers from the environment, the cache, and that
several lookups run concurrently."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.cache import cache

from approvals import policy
from approvals.evidence.lookups import lookup_findings, lookups_fetch
from tests.evidence.records import Records

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def compiled(lookups: list[dict[str, Any]], rules: list[dict[str, Any]] | None = None, **fields: Any) -> Any:
    spec = policy.parse_action_type(
        {
            "name": "refund",
            "params_schema": {"type": "object"},
            "lookups": lookups,
            "rules": rules or [],
            "builtin_checks": False,
            **fields,
        }
    )
    return policy.compile_policy(spec, 1)


def proposal(params: dict[str, Any] | None = None, **extra: Any) -> policy.Proposal:
    return policy.Proposal(
        sample_key="k",
        action_type="refund",
        params=params if params is not None else {"order_id": "A-1", "amount": 20},
        confidence=None,
        context={},
        agent={"name": "bot"},
        trajectory=[],
        now=NOW,
        **extra,
    )


def one(records: Records, url: str, params: dict[str, Any] | None = None, **lookup: Any) -> Any:
    answers = lookups_fetch(compiled([{"name": "order", "url": records.url + url, **lookup}]), proposal(params))
    assert len(answers) == 1
    return answers[0]


def test_a_lookup_answers_parsed_json_for_cel(records: Records) -> None:
    answer = one(records, "/orders/{params.order_id}")
    assert answer.error == ""
    assert answer.value == records.orders["A-1"]
    assert answer.record["status"] == 200
    assert answer.record["url"] == records.url + "/orders/A-1"
    assert answer.record["body"] == records.orders["A-1"]
    assert records.paths() == ["/orders/A-1"]


def test_url_expressions_are_url_encoded(records: Records) -> None:
    answer = one(records, "/orders/{params.order_id}", {"order_id": "A 2/x"})
    assert records.paths() == ["/orders/A%202%2Fx"]
    assert answer.value["order_id"] == "A 2/x"


@pytest.mark.parametrize(
    ("url", "params", "error"),
    [
        ("/orders/{params.order_id}", {"order_id": "nope"}, "answered HTTP 404"),
        ("/fail", None, "answered HTTP 503"),
        ("/text", None, "answer is not JSON"),
        ("/orders/{params.missing}", None, "URL:"),
        ("/orders/{params.order_id}", {"order_id": None}, "URL: a URL expression gave null"),
        ("/orders/{params.order_id}", {"order_id": {"a": 1}}, "URL: a URL expression gave dict"),
        ("/orders/{params.order_id}", {"order_id": [["a"]]}, "URL: a URL expression gave list"),
    ],
)
def test_every_failure_is_an_error_finding_and_a_null_value(
    records: Records, url: str, params: dict[str, Any] | None, error: str
) -> None:
    answer = one(records, url, params)
    assert answer.value is None
    assert answer.error.startswith(error), answer.error
    [found] = lookup_findings([answer])
    assert (found["rule"], found["outcome"], found["effect"]) == ("lookup:order", "error", "review")


def test_a_lookup_that_times_out_fails_within_its_timeout(records: Records) -> None:
    started = time.monotonic()
    answer = one(records, "/slow", timeout_ms=200)
    assert answer.error == "timed out after 200 ms"
    assert time.monotonic() - started < 1.0


def test_a_service_that_is_down_fails_at_once() -> None:
    from tests.conftest import free_port

    started = time.monotonic()
    answer = lookups_fetch(
        compiled([{"name": "order", "url": f"http://localhost:{free_port()}/orders/A-1"}]), proposal()
    )[0]
    assert answer.error.startswith("request failed:"), answer.error
    assert answer.value is None
    assert time.monotonic() - started < 1.0


def test_an_answer_over_the_size_limit_fails(records: Records, settings: Any) -> None:
    settings.GATE_LOOKUP_MAX_BYTES = 100_000
    answer = one(records, "/big")
    assert answer.error == "answer larger than 100000 bytes"


def test_the_address_guard_refuses_loopback_unless_allowed(records: Records, settings: Any) -> None:
    settings.GATE_LOOKUP_ALLOWED_HOSTS = []
    settings.GATE_LOOKUP_ALLOW_PRIVATE = False
    refused = one(records, "/orders/A-1")
    assert refused.error.startswith("address refused:")
    assert "GATE_LOOKUP_ALLOW_PRIVATE" in refused.error
    literal = lookups_fetch(
        compiled([{"name": "order", "url": f"http://127.0.0.1:{records.port}/orders/A-1"}]), proposal()
    )[0]
    assert literal.error.startswith("address refused:")
    assert records.paths() == []  # nothing was sent
    settings.GATE_LOOKUP_ALLOW_PRIVATE = True
    assert one(records, "/orders/A-1").error == ""


def test_headers_take_environment_variables(records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_TOKEN", "s3cret")
    answer = one(records, "/headers", headers={"Authorization": "Bearer ${SHOP_TOKEN}"})
    assert answer.value == {"authorization": "Bearer s3cret"}
    monkeypatch.delenv("SHOP_TOKEN")
    missing = one(records, "/headers", headers={"Authorization": "Bearer ${SHOP_TOKEN}"})
    assert missing.error == "headers: environment variable SHOP_TOKEN is not set"
    assert len(records.requests) == 1  # the second was never sent
    assert set(answer.record) == {"url", "status", "ms", "body"}  # the headers are not kept


def test_cached_answers_are_reused_within_cache_seconds(records: Records) -> None:
    cache.clear()
    first = one(records, "/orders/{params.order_id}", cache_seconds=60)
    second = one(records, "/orders/{params.order_id}", cache_seconds=60)
    assert first.value == second.value == records.orders["A-1"]
    assert second.record["cached"] is True
    assert records.paths() == ["/orders/A-1"]
    failed = one(records, "/fail", cache_seconds=60)
    again = one(records, "/fail", cache_seconds=60)
    assert failed.error
    assert again.error
    assert records.paths().count("/fail") == 2  # failures are never cached


def test_several_lookups_run_concurrently(records: Records) -> None:
    lookups = [{"name": f"l{i}", "url": records.url + "/wait/0.4"} for i in range(3)]
    started = time.monotonic()
    answers = lookups_fetch(compiled(lookups), proposal())
    elapsed = time.monotonic() - started
    assert [a.name for a in answers] == ["l0", "l1", "l2"]
    assert all(a.value == {"waited": True} for a in answers)
    assert elapsed < 1.0, elapsed  # one after another would take 1.2 s


def test_the_decision_reads_lookups_and_holds_on_a_failed_one(records: Records) -> None:
    rules = [
        {"name": "refundable", "require": "lookups.order.refundable == true"},
        {"name": "within_total", "require": "params.amount <= lookups.order.total"},
    ]
    policy_ = compiled([{"name": "order", "url": records.url + "/orders/{params.order_id}"}], rules)

    def decide(params: dict[str, Any]) -> policy.Decision:
        answers = lookups_fetch(policy_, proposal(params))
        gathered = proposal(
            params,
            lookups={a.name: a.value for a in answers},
            evidence_findings=tuple(lookup_findings(answers)),
        )
        return policy.policy_evaluate(policy_, gathered)

    assert decide({"order_id": "A-1", "amount": 20}).status == policy.AUTO_APPROVED
    over = decide({"order_id": "A-1", "amount": 200})
    assert over.status == policy.NEEDS_REVIEW
    assert [f["rule"] for f in over.findings if f["outcome"] == "fail"] == ["within_total"]
    unknown = decide({"order_id": "Z-9", "amount": 5})  # 404: never approved on missing evidence
    assert unknown.status == policy.NEEDS_REVIEW
    assert "lookup:order" in [f["rule"] for f in unknown.findings if f["outcome"] == "error"]


@pytest.mark.django_db
def test_the_dry_run_fetches_lookups_as_they_stand_now(records: Records, tmp_path: Any) -> None:
    import json

    import yaml
    from django.core.management import call_command

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "action_types": [
                    {
                        "name": "refund",
                        "params_schema": {"type": "object"},
                        "lookups": [{"name": "order", "url": records.url + "/orders/{params.order_id}"}],
                        "rules": [{"name": "refundable", "require": "lookups.order.refundable == true"}],
                    }
                ],
            }
        )
    )
    lines = tmp_path / "proposals.jsonl"
    lines.write_text(
        "\n".join(
            json.dumps({"action_type": "refund", "params": {"order_id": order}, "label": label})
            for order, label in (("A-1", "correct"), ("A 2/x", "unsafe"), ("Z-9", "unsafe"))
        )
    )
    out = tmp_path / "out.json"
    with out.open("w") as handle:
        call_command("replay", str(lines), "--policy", str(policy_file), "--json", stdout=handle)
    figures = json.loads(out.read_text())
    assert figures["by_label"]["correct"]["auto_approved"] == 1
    assert figures["by_label"]["unsafe"]["needs_review"] == 2  # not refundable; no such order
    assert records.paths() == ["/orders/A-1", "/orders/A%202%2Fx", "/orders/Z-9"]


def test_what_if_replays_judge_on_the_evidence_stored_with_the_action() -> None:
    from approvals.evidence.services import stored_evidence

    record = {
        "lookups": {"order": {"url": "u", "status": 200, "body": {"total": 5}}, "gone": {"url": "u", "error": "x"}},
        "history": {"n": {"value": 3, "matched": {}}, "broken": {"error": "x"}},
    }
    replayed = stored_evidence(proposal(), record)
    assert replayed.lookups == {"order": {"total": 5}}
    assert replayed.history == {"n": 3}
