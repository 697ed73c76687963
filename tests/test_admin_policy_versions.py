"""The admin's policy pages: two versions compared side by side, and the rules editor (CEL in
monospaced boxes, the params schema indented)."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from approvals.gate.policies import policies_import
from approvals.models import ActionType, PolicyVersion
from tests.factories import UserFactory
from tests.gate.test_policy_diff import BEFORE, LOOKED_UP, LOOKED_UP_AND_DELIVERED, after_document

pytestmark = pytest.mark.django_db

COMPARE = "/admin/approvals/policyversion/compare/"


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def versions() -> tuple[int, int]:
    return policies_import(document=BEFORE, actor="test"), policies_import(document=after_document(), actor="test")


def text_of(response: object) -> str:
    return html.unescape(response.content.decode())  # type: ignore[attr-defined]


def test_the_compare_page_shows_a_changed_rule_with_the_cel_of_each_side(
    admin_client: Client, versions: tuple[int, int]
) -> None:
    first, second = versions

    response = admin_client.get(COMPARE, {"a": first, "b": second})

    assert response.status_code == 200
    page = text_of(response)
    row = re.search(r'<tr class="rule-changed" data-rule="looked_up">(.*?)</tr>', page, re.S)
    assert row is not None
    before, after = (
        re.findall(r'<span class="line( differs)?">(.*?)</span>', cell, re.S)
        for cell in re.findall(r'<pre class="lines cel">(.*?)</pre>', row.group(1), re.S)
    )
    assert "\n".join(text for _, text in before) == LOOKED_UP
    assert "\n".join(text for _, text in after) == LOOKED_UP_AND_DELIVERED
    assert all(marked for marked, _ in before + after)  # every line of it changed
    assert '<tr class="rule-added" data-rule="no_refund_twice">' in page
    assert '<tr class="rule-removed" data-rule="old_limit">' in page
    assert 'data-rule="customer_asked"' not in page  # unchanged rules are left out
    refund = page[page.index('id="type-refund"') :]
    fields = re.search(r'<table class="policy-diff fields-diff">(.*?)</table>', refund, re.S)
    assert fields is not None
    assert "<code>max_auto_amount</code>" in fields.group(1)
    assert "<pre>100.0</pre>" in fields.group(1)
    assert "<pre>200.0</pre>" in fields.group(1)
    assert '"minimum": 0' in fields.group(1)
    assert "Rule order: looked_up, customer_asked → customer_asked, looked_up" in page
    assert 'id="type-close"' in page
    assert 'id="type-wipe"' not in page
    assert " style=" not in response.content.decode().split('id="content-main"')[1]  # CSP: no inline style


def test_without_a_choice_it_compares_the_latest_change(admin_client: Client, versions: tuple[int, int]) -> None:
    first, second = versions

    page = text_of(admin_client.get(COMPARE))

    assert f"From <strong>v{first}</strong>" in page
    assert f"to <strong>v{second}</strong>" in page
    assert 'data-rule="looked_up"' in page


def test_an_unknown_version_is_a_clear_error_and_no_diff(admin_client: Client, versions: tuple[int, int]) -> None:
    response = admin_client.get(COMPARE, {"a": versions[0], "b": 99})

    assert response.status_code == 200
    page = text_of(response)
    assert "B (after): Select a valid choice. 99 is not one of the available choices." in page
    assert 'class="type-diff"' not in page


def test_the_same_version_twice_says_so(admin_client: Client, versions: tuple[int, int]) -> None:
    page = text_of(admin_client.get(COMPARE, {"a": versions[1], "b": versions[1]}))

    assert f"v{versions[1]} and v{versions[1]} state the same policy." in page


def test_the_list_links_to_the_comparison_and_an_action_compares_two(
    admin_client: Client, versions: tuple[int, int]
) -> None:
    first, second = versions
    listing = text_of(admin_client.get("/admin/approvals/policyversion/"))
    assert f'href="{COMPARE}"' in listing
    assert f'href="{COMPARE}?a={first}&b={second}">with v{first}</a>' in listing

    pks = list(PolicyVersion.objects.values_list("pk", flat=True))
    chosen = admin_client.post(
        "/admin/approvals/policyversion/", {"action": "compare_selected", "_selected_action": pks}
    )
    assert chosen.status_code == 302
    assert chosen["Location"] == f"{COMPARE}?a={first}&b={second}"

    one = admin_client.post(
        "/admin/approvals/policyversion/", {"action": "compare_selected", "_selected_action": pks[:1]}, follow=True
    )
    assert "Select exactly two versions to compare." in text_of(one)


def test_staff_without_the_view_permission_may_not_compare(client: Client, versions: tuple[int, int]) -> None:
    staff = UserFactory(username="clerk", is_staff=True)
    client.force_login(staff)
    assert client.get(COMPARE).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_policyversion"))
    assert client.get(COMPARE).status_code == 200

    client.logout()
    assert client.get(COMPARE).status_code == 302  # to the log-in page


# --- the rules editor ------------------------------------------------------------------------------


def test_the_rules_editor_has_monospaced_cel_boxes_and_an_indented_schema(
    admin_client: Client, versions: tuple[int, int]
) -> None:
    refund = ActionType.objects.get(name="refund")

    response = admin_client.get(f"/admin/approvals/actiontype/{refund.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "approvals/admin.css" in page
    boxes = re.findall(r'<textarea name="rules-(\d)-require"[^>]*class="cel-source"[^>]*rows="(\d+)"', page)
    boxes += re.findall(r'<textarea name="rules-(\d)-require"[^>]*rows="(\d+)"[^>]*class="cel-source"', page)
    assert sorted(index for index, _ in boxes) == ["0", "1", "2"]
    assert all(int(rows) >= 3 for _, rows in boxes)
    schema = re.search(r'<textarea name="params_schema"[^>]*>(.*?)</textarea>', page, re.S)
    assert schema is not None
    shown = html.unescape(schema.group(1)).strip()
    assert shown == json.dumps(refund.params_schema, indent=2, ensure_ascii=False)
    assert "\n  " in shown
