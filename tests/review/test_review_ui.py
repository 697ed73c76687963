"""The reviewer's desk, server side: access, the queue's tabs and filters, claims, deciding and
labelling from the page, safe rendering and the Content Security Policy."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from approvals.models import AuditEvent, Label, ProposedAction, Status
from approvals.review.services import action_decide
from tests.conftest import LOOKED_UP
from tests.factories import ReviewerFactory, UserFactory

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def browser(reviewer: Any) -> Client:
    client = Client()
    client.force_login(reviewer)
    return client


@pytest.fixture
def held(policy_v1: int, propose: Any) -> list[str]:
    """Three held refunds (over the amount limit), the last one carrying hostile text."""
    ids = []
    for amount, rationale in ((150, "first"), (300, "second"), (900, SCRIPT)):
        response = propose(
            {
                "action_type": "refund",
                "params": {"order_id": "A-1", "amount": amount, "note": SCRIPT},
                "rationale": rationale,
                "trajectory": [*LOOKED_UP, {"kind": "message", "role": "user", "content": SCRIPT}],
            }
        )
        assert response.action["status"] == "needs_review"
        ids.append(response.action["id"])
    return ids


def test_anonymous_is_sent_to_log_in_and_others_get_a_clear_403(held: list[str]) -> None:
    assert Client().get("/review/").status_code == 302
    assert Client().get(f"/review/{held[0]}")["Location"].startswith("/accounts/login/")
    outsider = Client()
    outsider.force_login(UserFactory())
    response = outsider.get("/review/")
    assert response.status_code == 403
    assert b"reviewers" in response.content


def test_queue_lists_held_actions_with_filters_and_tabs(browser: Client, held: list[str], propose: Any) -> None:
    propose({"action_type": "escalate_ticket", "params": {"ticket": "T-1"}})

    queue = browser.get("/review/")
    refunds = browser.get("/review/?action_type=refund")
    high = browser.get("/review/?risk=high")
    found = browser.get(f"/review/?q={held[1]}")

    assert queue.status_code == 200
    assert queue.context["page"].paginator.count == 4
    assert refunds.context["page"].paginator.count == 3
    assert high.context["page"].paginator.count == 0  # these refunds carry risk 0.1
    assert [str(a.id) for a in found.context["page"].object_list] == [held[1]]
    assert browser.get("/review/?tab=decided").context["page"].paginator.count == 0
    assert browser.get("/review/?tab=audit").status_code == 200


def test_opening_an_item_claims_it_and_others_see_who_holds_it(browser: Client, held: list[str]) -> None:
    # Reading the page changes nothing; the page's script claims the item with a POST once open.
    browser.get(f"/review/{held[0]}")
    assert ProposedAction.objects.get(pk=held[0]).claimed_by is None
    mine = browser.post(f"/review/{held[0]}/claim").json()
    other = Client()
    other.force_login(ReviewerFactory(username="other"))

    page = other.get(f"/review/{held[0]}").content.decode()
    theirs = other.post(f"/review/{held[0]}/claim").json()
    queue = other.get("/review/").content.decode()

    action = ProposedAction.objects.get(pk=held[0])
    assert action.claimed_by.username == "lead"
    assert (mine["claimed_by"], mine["mine"]) == ("lead", True)
    assert (theirs["claimed_by"], theirs["mine"]) == ("lead", False)
    assert "lead has this open until" in page
    assert "open: lead" in queue
    assert AuditEvent.objects.filter(action=action, event="claimed").count() == 1


def test_claiming_is_a_post(browser: Client, held: list[str]) -> None:
    assert browser.get(f"/review/{held[0]}/claim").status_code == 405
    assert browser.post(f"/review/{uuid.uuid4()}/claim").status_code == 404
    assert ProposedAction.objects.get(pk=held[0]).claimed_by is None


def test_approve_from_the_page_goes_to_the_next_item(browser: Client, held: list[str]) -> None:
    response = browser.post(f"/review/{held[2]}/decide", {"verdict": "approve", "preset": "Within policy after review"})

    action = ProposedAction.objects.get(pk=held[2])
    assert action.status == Status.APPROVED
    assert action.decision.reason == "Within policy after review"
    assert action.claimed_by is None
    assert response.status_code == 302
    assert response["Location"] in {f"/review/{held[0]}", f"/review/{held[1]}"}


def test_a_decision_made_elsewhere_is_refused_with_a_clear_message(browser: Client, held: list[str], reviewer) -> None:
    action_decide(action_id=held[0], user=ReviewerFactory(username="quick"), verdict="reject")

    response = browser.post(f"/review/{held[0]}/decide", {"verdict": "approve"}, follow=True)

    assert "already rejected elsewhere" in response.content.decode()
    assert ProposedAction.objects.get(pk=held[0]).decision.reviewer.username == "quick"


def test_label_any_action_with_tags(browser: Client, held: list[str]) -> None:
    response = browser.post(
        f"/review/{held[1]}/label",
        {"label": "unsafe", "tags": ["amount_mismatch", "policy_violation"], "other_tags": "odd, ", "note": "no"},
    )

    label = Label.objects.get(action_id=held[1])
    assert response.status_code == 302
    assert label.label == "unsafe"
    assert label.tags == ["amount_mismatch", "odd", "policy_violation"]


def test_agent_text_is_escaped_everywhere(browser: Client, held: list[str]) -> None:
    detail = browser.get(f"/review/{held[2]}").content.decode()
    queue = browser.get("/review/").content.decode()
    row = browser.get(f"/review/{held[2]}/row").content.decode()

    for page in (detail, queue, row):
        assert SCRIPT not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in detail


def test_pages_carry_a_strict_content_security_policy(browser: Client, held: list[str]) -> None:
    policy = browser.get(f"/review/{held[0]}")["Content-Security-Policy"]

    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy


def test_every_form_carries_a_csrf_token(browser: Client, held: list[str]) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(ReviewerFactory(username="strict"))

    page = strict.get(f"/review/{held[0]}").content.decode()

    assert (
        page.count('name="csrfmiddlewaretoken"') == page.count('<form method="post"') == 5
    )  # approve, edit then approve, reject, label, logout
    assert strict.post(f"/review/{held[0]}/decide", {"verdict": "approve"}).status_code == 403


def test_static_assets_are_served_locally(browser: Client) -> None:
    page = browser.get("/review/").content.decode()

    assert "/static/approvals/app.js" in page
    assert "/static/approvals/app.css" in page
    assert "http://" not in page.split("<main>")[0]
    assert "https://" not in page.split("<main>")[0]


def test_pages_of_a_long_queue_keep_the_queue_order(browser: Client, policy_v1: int) -> None:
    from approvals.models import ActionType
    from tests.factories import AgentFactory, ProposedActionFactory

    # given: 120 held actions of distinct risks
    refund, agent = ActionType.objects.get(name="refund"), AgentFactory()
    for n in range(120):
        ProposedActionFactory(action_type=refund, agent=agent, status=Status.NEEDS_REVIEW, risk_score=n / 1000)

    # when
    pages = [browser.get(f"/review/?page={n}").context["page"] for n in (1, 2, 3)]

    # then: the three pages are the queue, riskiest first, each action once
    risks = [action.risk_score for page in pages for action in page.object_list]
    assert [len(page.object_list) for page in pages] == [50, 50, 20]
    assert risks == sorted(risks, reverse=True)
    assert len(set(risks)) == 120
