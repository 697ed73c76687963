"""The admin's save of a type runs the type's policy tests and the safety net of the labelled history
(contract §6.2): a failing test refuses the save with the failure shown; a save that would newly
auto-approve an action labelled unsafe asks first, on a page listing them, and goes live only with
"go live anyway"; nothing changes until then."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.test import Client

from approvals.gate.policies import policies_import
from approvals.models import ActionType, AuditEvent, PolicyVersion
from tests.conftest import LOOKED_UP
from tests.factories import UserFactory
from tests.labelled_history import amount_history, refund_policy

pytestmark = pytest.mark.django_db

HELD_ABOVE_100 = {
    "name": "150 is held",
    "proposal": {"params": {"order_id": "A-1", "amount": 150}, "trajectory": LOOKED_UP},
    "expect": "needs_review",
}


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def change_form(action_type: ActionType, **overrides: Any) -> dict[str, Any]:
    """The admin's change form of ``action_type`` as the page sends it, with ``overrides``."""

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    data: dict[str, Any] = {
        "name": action_type.name,
        "description": action_type.description,
        "mode": action_type.mode,
        "params_schema": json.dumps(action_type.params_schema),
        "base_risk": text(action_type.base_risk),
        "auto_approve_max_risk": text(action_type.auto_approve_max_risk),
        "block_min_risk": text(action_type.block_min_risk),
        "min_confidence": text(action_type.min_confidence),
        "amount_path": action_type.amount_path,
        "max_auto_amount": text(action_type.max_auto_amount),
        "audit_sample_rate": text(action_type.audit_sample_rate),
        "review_sla_minutes": text(action_type.review_sla_minutes),
        "expire_after_minutes": text(action_type.expire_after_minutes),
        "_save": "Save",
    }
    for flag in ("enabled", "builtin_checks"):
        if getattr(action_type, flag):
            data[flag] = "on"
    rules = list(action_type.rules.order_by("position", "id"))
    data.update({"rules-TOTAL_FORMS": str(len(rules)), "rules-INITIAL_FORMS": str(len(rules))})
    data.update({"rules-MIN_NUM_FORMS": "0", "rules-MAX_NUM_FORMS": "1000"})
    for index, rule in enumerate(rules):
        for name in ("position", "name", "require", "on_fail", "risk", "message"):
            data[f"rules-{index}-{name}"] = text(getattr(rule, name))
        data[f"rules-{index}-id"] = str(rule.pk)
    data.update(overrides)
    return data


def url(action_type: ActionType) -> str:
    return f"/admin/approvals/actiontype/{action_type.pk}/change/"


def test_a_save_that_fails_the_types_tests_is_refused_with_the_failure_shown(admin_client: Client) -> None:
    policies_import(document=refund_policy(tests=[HELD_ABOVE_100]), actor="test")
    refund = ActionType.objects.get(name="refund")
    versions = PolicyVersion.objects.count()

    response = admin_client.post(url(refund), change_form(refund, max_auto_amount="200"))

    assert response.status_code == 200  # the form again, with the edit kept
    page = html.unescape(response.content.decode())
    assert "Policy test failed: refund: test '150 is held': expected needs_review, got auto_approved" in page
    assert 'name="max_auto_amount" value="200"' in page
    refund.refresh_from_db()
    assert (refund.max_auto_amount, PolicyVersion.objects.count()) == (100, versions)


def test_the_type_page_shows_its_tests(admin_client: Client) -> None:
    policies_import(document=refund_policy(tests=[HELD_ABOVE_100]), actor="test")

    page = admin_client.get(url(ActionType.objects.get(name="refund"))).content.decode()

    assert "Policy tests" in page
    assert "150 is held" in page


def test_a_save_that_would_newly_auto_approve_an_unsafe_action_asks_first(admin_client: Client) -> None:
    actions = amount_history()
    refund = ActionType.objects.get(name="refund")
    versions = PolicyVersion.objects.count()
    unsafe = str(actions["mid_unsafe"].id)

    # when: the limit goes from 100 to 200
    confirm = admin_client.post(url(refund), change_form(refund, max_auto_amount="200"))

    # then: a page that names the unsafe action and the safe one gained, and nothing saved yet
    assert confirm.status_code == 409
    page = confirm.content.decode()
    assert f"<code>{unsafe}</code>" in page
    assert '<strong id="safe-newly-auto-approved">1</strong>' in page
    assert "Go live anyway" in page
    refund.refresh_from_db()
    assert (refund.max_auto_amount, PolicyVersion.objects.count()) == (100, versions)
    assert not AuditEvent.objects.filter(event="policy_risk_accepted").exists()

    # when: the admin goes live anyway (the page's own form, sent back as it is)
    form = re.search(r'<form method="post" action="([^"]+)" id="accept-risk-form">(.*?)</form>', page, re.S)
    assert form is not None
    fields = [(html.unescape(n), html.unescape(v)) for n, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form[2])]
    again: dict[str, Any] = {}
    for name, value in fields:
        again.setdefault(name, []).append(value)
    saved = admin_client.post(form[1], again)

    # then: saved as a new version, the acceptance audited with the action's id
    assert saved.status_code == 302, saved.content.decode()[:2000]
    refund.refresh_from_db()
    assert refund.max_auto_amount == 200
    assert PolicyVersion.objects.count() == versions + 1
    accepted = AuditEvent.objects.get(event="policy_risk_accepted")
    assert accepted.actor == "user:root"
    assert [case["id"] for case in accepted.data["accepted"]] == [unsafe]
    assert PolicyVersion.objects.latest("number").source == "admin"


def test_a_rule_added_in_the_admin_is_checked_against_the_history_too(admin_client: Client) -> None:
    amount_history()
    refund = ActionType.objects.get(name="refund")
    data = change_form(refund, max_auto_amount="200")
    data.update(
        {
            "rules-TOTAL_FORMS": "2",
            "rules-1-position": "1",
            "rules-1-name": "not_150",
            "rules-1-require": "params.amount != 150",
            "rules-1-on_fail": "review",
            "rules-1-risk": "0",
            "rules-1-message": "",
        }
    )

    saved = admin_client.post(url(refund), data)

    # the unsafe refund of 150 stays held by the new rule: saved without asking
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert list(refund.rules.values_list("name", flat=True)) == ["order_was_looked_up", "not_150"]
    assert ActionType.objects.get(pk=refund.pk).max_auto_amount == 200
    changed = AuditEvent.objects.filter(event="policy_changed").latest("created_at", "id")
    assert changed.data["safety_net"]["safe_newly_auto_approved"] == 1
