"""``approvals_required`` in the policy store (contract §6.3): exported with the policy, shown in
policy diffs, stored on the type, and edited in the admin (blank there: 1)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.test import Client

from approvals.gate.policies import policies_import
from approvals.gate.policy_diff import policy_diff, policy_diff_text
from approvals.gate.selectors import policy_document_current
from approvals.models import ActionType
from tests.conftest import TEST_POLICY
from tests.factories import UserFactory
from tests.test_admin import form

pytestmark = pytest.mark.django_db


def with_required(required: int) -> dict[str, Any]:
    document = copy.deepcopy(TEST_POLICY)
    document["action_types"][0]["approvals_required"] = required
    return document


def test_it_is_stored_and_exported() -> None:
    policies_import(document=with_required(2), actor="test")

    assert ActionType.objects.get(name="refund").approvals_required == 2
    exported = {t["name"]: t for t in policy_document_current()["action_types"]}
    assert exported["refund"]["approvals_required"] == 2
    assert exported["escalate_ticket"]["approvals_required"] == 1


def test_a_policy_diff_names_the_change_and_a_left_out_default_is_none() -> None:
    diff = policy_diff(TEST_POLICY, with_required(2))

    [change] = diff.changed
    assert [(f.name, f.before, f.after) for f in change.fields] == [("approvals_required", 1, 2)]
    assert "approvals_required: 1 -> 2" in policy_diff_text(diff)
    assert not policy_diff(TEST_POLICY, with_required(1)).changed


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize(("posted", "stored"), [("2", 2), ("", 1)])
def test_the_admin_edits_it(admin_client: Client, posted: str, stored: int) -> None:
    response = admin_client.post("/admin/approvals/actiontype/add/", form(approvals_required=posted))

    assert response.status_code == 302, response.content.decode()[:2000]
    assert ActionType.objects.get(name="refund").approvals_required == stored


def test_the_admin_refuses_it_out_of_bounds(admin_client: Client) -> None:
    response = admin_client.post("/admin/approvals/actiontype/add/", form(approvals_required="6"))

    assert response.status_code == 200
    assert "approvals_required" in response.context["adminform"].form.errors
    assert not ActionType.objects.filter(name="refund").exists()
