"""``notify_emails`` and ``notify_slack`` in the policy format (contract §6.3): validated with their
place, exported only when set, compared by the policy diff; and a type with nobody to tell costs the
evaluation nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from approvals import policy
from approvals.gate import selectors
from approvals.gate.policies import policies_import
from approvals.gate.policy_diff import policy_diff
from approvals.models import ActionType
from approvals.notifications.selectors import notifications_wanted
from tests.notifications.conftest import wire_type


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("ops@example.com", "action_types[0] (wire).notify_emails: must be a list of e-mail addresses"),
        (
            ["ops@example.com", "not an address"],
            "action_types[0] (wire).notify_emails[1]: 'not an address' is not a valid e-mail address",
        ),
        ([42], "action_types[0] (wire).notify_emails[0]: must be an e-mail address (a string)"),
        (
            ["a@example.com", "A@example.com"],
            "action_types[0] (wire).notify_emails[1]: 'A@example.com' is listed twice",
        ),
    ],
)
def test_bad_notify_emails_are_refused_with_their_place(value: Any, error: str) -> None:
    with pytest.raises(policy.PolicyError) as refused:
        policy.parse_document({"version": 1, "action_types": [wire_type(notify_emails=value)]})
    assert error in refused.value.errors


def test_notify_slack_must_be_a_boolean() -> None:
    with pytest.raises(policy.PolicyError) as refused:
        policy.parse_document({"version": 1, "action_types": [wire_type(notify_slack="yes")]})
    assert "action_types[0] (wire).notify_slack: must be true or false" in refused.value.errors


def test_notify_fields_are_stored_exported_and_compared(db: None) -> None:
    policies_import(
        document={"version": 1, "action_types": [wire_type(notify_emails=["ops@example.com"], notify_slack=False)]},
        actor="test",
    )
    stored = ActionType.objects.get(name="wire")
    assert (stored.notify_emails, stored.notify_slack) == (["ops@example.com"], False)

    exported = selectors.policy_document_current()["action_types"][0]
    assert exported["notify_emails"] == ["ops@example.com"]
    assert exported["notify_slack"] is False
    policy.parse_document({"version": 1, "action_types": [exported]})  # round trip

    policies_import(document={"version": 1, "action_types": [wire_type()]}, actor="test")
    plain = selectors.policy_document_current()["action_types"][0]
    assert "notify_emails" not in plain
    assert "notify_slack" not in plain
    [change] = policy_diff(
        {"version": 1, "action_types": [exported]}, {"version": 1, "action_types": [plain]}
    ).action_types
    assert {f.name: (f.before, f.after) for f in change.fields} == {
        "notify_emails": (["ops@example.com"], []),
        "notify_slack": (False, True),
    }


def test_whether_anyone_is_told_reads_nothing_but_the_loaded_type(db: None, django_assert_num_queries: Any) -> None:
    quiet = ActionType(name="quiet", notify_emails=[], notify_slack=True)
    emailed = ActionType(name="emailed", notify_emails=["ops@example.com"])
    opted_out = ActionType(name="opted_out", notify_slack=False)

    with django_assert_num_queries(0):
        assert notifications_wanted(quiet) is False  # no Slack set up
        assert notifications_wanted(emailed) is True
        with override_settings(GATE_SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T/B/x"):
            assert notifications_wanted(quiet) is True
            assert notifications_wanted(opted_out) is False
