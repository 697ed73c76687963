"""Edit, then approve, and the two-person rule (contract §6.3) in Debian's Chromium against the real
stack (uvicorn, a Celery worker, PostgreSQL, Redis): a reviewer changes a param, sees the diff, and
the agent reads the approved params; two reviewers in two sessions approve one action, the second
seeing the first's approval arrive live."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from approvals.gate.policies import policies_import
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import ReviewerFactory
from tests.review.test_browser_desk import (  # the module's server, browser and helpers, shared
    base,
    chromium,
    desk_server,
    held_refund,
    log_in,
    open_action,
    people,
    read,
    shot,
)

__all__ = ["base", "chromium", "desk_server", "people"]  # fixtures, used by name

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_edit_then_approve_shows_the_diff_and_the_agent_reads_the_approved_params(
    base: str, people: dict[str, Any], chromium: Any
) -> None:
    agent = people["agent"]
    action_id = held_refund(base, agent, amount=500)
    page = log_in(chromium, base)
    open_action(page, base, action_id)

    # "e" opens the form, the first field focused, each param typed by the schema
    page.keyboard.press("e")
    assert page.locator("#edit-params").get_attribute("open") is not None
    assert page.locator("#edit-amount").input_value() == "500"
    assert page.locator("#edit-diff").inner_text().startswith("No change yet")

    # the diff follows what is typed
    page.fill("#edit-amount", "60")
    assert page.locator("#edit-diff li").inner_text() == "amount: 500 → 60"
    page.fill("#edit-reason", "the customer asked for 60")
    page.locator("#edit-params").scroll_into_view_if_needed()
    shot(page, "edit", full_page=False)

    # a submit waits out the same undo window as any decision; Enter confirms it
    page.click("#edit-approve")
    assert page.locator("#pending-text").inner_text() == f"Approving, with your edit, refund {action_id[:8]}…"
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: action_id not in url)

    seen = read(base, agent, action_id)
    assert seen["status"] == "approved"
    assert seen["params"]["amount"] == 500
    assert seen["approved_params"] == {"order_id": "A-1", "amount": 60}
    assert seen["decision"]["reason"] == "the customer asked for 60"

    open_action(page, base, action_id)
    assert page.locator("#param-changes").inner_text().splitlines()[-1] == "amount: 500 → 60"


def test_two_reviewers_in_two_sessions_approve_once_each_and_the_second_sees_the_first_live(
    base: str, people: dict[str, Any], chromium: Any
) -> None:
    two_people = {**TEST_POLICY, "action_types": [{**TEST_POLICY["action_types"][0], "approvals_required": 2}]}
    policies_import(document=two_people, actor="test")
    ReviewerFactory(username="omar")
    agent = people["agent"]
    action_id = held_refund(base, agent, amount=500)
    first = log_in(chromium, base)
    second = log_in(chromium, base, username="omar")
    open_action(first, base, action_id)
    open_action(second, base, action_id)
    assert second.locator("#approval-progress strong").inner_text() == "0 of 2 approvals"

    # the first approval leaves the action held, and the second page hears of it
    first.keyboard.press("a")
    first.keyboard.press("a")
    first.wait_for_url(lambda url: action_id not in url)
    second.wait_for_function(
        "document.getElementById('approval-progress').textContent.includes('1 of 2')", timeout=10_000
    )
    assert "rosa approved it just now" in second.locator("#approval-progress").inner_text()
    assert read(base, agent, action_id)["status"] == "needs_review"

    # the first reviewer, back on the action, sees their approval and no approve form
    open_action(first, base, action_id)
    assert "You approved it" in first.locator("#approval-progress").inner_text()
    assert first.locator("#approve-form").count() == 0
    # ...and the queue shows the progress
    first.goto(f"{base}/review/")
    assert first.locator(f"tr.row[data-id='{action_id}'] .badge-quorum").inner_text() == "1 of 2"
    second.locator("#decide").scroll_into_view_if_needed()
    shot(second, "two-people", full_page=False)

    # the second approval decides it
    second.keyboard.press("a")
    second.keyboard.press("a")
    second.wait_for_url(lambda url: action_id not in url)
    seen = read(base, agent, action_id)
    assert seen["status"] == "approved"
    assert [approval["by"] for approval in seen["approvals"]] == ["rosa", "omar"]
    first.wait_for_function(f"!document.querySelector(\"tr.row[data-id='{action_id}']\")", timeout=10_000)


def test_the_same_reviewer_cannot_approve_twice_through_the_api(base: str, people: dict[str, Any]) -> None:
    two_people = {**TEST_POLICY, "action_types": [{**TEST_POLICY["action_types"][0], "approvals_required": 2}]}
    policies_import(document=two_people, actor="test")
    action_id = held_refund(base, people["agent"], amount=500)
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=people["reviewer"]).key
    answers = [
        httpx.post(
            f"{base}/api/v1/actions/{action_id}/decision",
            json={"verdict": "approve"},
            headers={"Authorization": f"Token {token}"},
            timeout=10,
        )
        for _ in range(2)
    ]
    assert [answer.status_code for answer in answers] == [200, 409]
    assert answers[0].json()["approvals_required"] == 2
    assert LOOKED_UP  # the held refund looked its order up: it is held for its amount, not its evidence
