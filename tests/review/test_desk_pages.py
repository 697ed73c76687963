"""The reviewer's desk as its pages render it (no browser needed): why an action is held, failures
before passes, which tool results are unfolded, the empty states, banners by status, the reject
form without a made-up reason, and the 403 and 404 pages."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from approvals.models import ProposedAction, Status
from tests.conftest import LOOKED_UP
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(reviewer: Any) -> Client:
    client = Client()
    client.force_login(reviewer)
    return client


def refund(propose: Any, amount: float, *, trajectory: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    response = propose(
        {
            "action_type": "refund",
            "params": {"order_id": "A-1", "amount": amount},
            "trajectory": LOOKED_UP if trajectory is None else trajectory,
        }
    )
    assert response.status_code == 201
    return response.action


def test_the_queue_says_why_each_action_is_held(desk: Client, policy_v1: int, propose: Any) -> None:
    # given: one refund over the amount limit, one that also never looked the order up
    over = refund(propose, 500)
    unchecked = refund(propose, 700, trajectory=[])

    page = desk.get("/review/").content.decode()

    # then: each row names its failing checks, short, with the full message in a title
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr class="row[^"]*" data-id="([^"]+)".*?</tr>', page, re.S)}
    assert "Why held" in page
    assert "<strong>amount</strong>" in rows[over["id"]]
    assert 'title="amount: amount 500 is above max_auto_amount 100"' in rows[over["id"]]
    assert "order_was_looked_up" not in rows[over["id"]]
    assert "<strong>order_was_looked_up</strong>" in rows[unchecked["id"]]
    assert "Refund for an order the agent never looked up" in rows[unchecked["id"]]


def test_the_why_held_column_costs_no_query_per_row(desk: Client, policy_v1: int, propose: Any) -> None:
    refund(propose, 500)
    with CaptureQueriesContext(connection) as one_row:
        assert desk.get("/review/").status_code == 200
    for amount in (600, 700, 800, 900):
        refund(propose, amount)
    with CaptureQueriesContext(connection) as five_rows:
        page = desk.get("/review/").content.decode()

    assert page.count("<strong>amount</strong>") == 5
    assert len(five_rows.captured_queries) == len(one_row.captured_queries)


def test_the_detail_page_shows_failures_first_and_folds_the_passes(desk: Client, policy_v1: int, propose: Any) -> None:
    action = refund(propose, 500)

    page = desk.get(f"/review/{action['id']}").content.decode()

    failing = page[page.index('id="failing"') : page.index('id="passed"')]
    passed = page[page.index('id="passed"') : page.index("</details>", page.index('id="passed"'))]
    passes = sum(1 for f in ProposedAction.objects.get(pk=action["id"]).findings if f["outcome"] == "pass")
    assert passes >= 2
    assert "<strong>amount</strong>" in failing
    assert "finding-pass" not in failing
    assert f"{passes} checks passed" in passed
    assert passed.count("finding-pass") == passes
    assert '<details class="passed" id="passed">' in page  # folded: no "open"


def test_tool_results_the_rules_read_are_unfolded(desk: Client, policy_v1: int, propose: Any) -> None:
    # given: a trajectory with a tool no rule names, then the lookup the refund's rule reads
    weather: dict[str, Any] = {"kind": "tool_call", "tool": "get_weather", "args": {"city": "Lyon"}, "result": "sunny"}
    action = refund(propose, 500, trajectory=[weather, *LOOKED_UP])

    page = desk.get(f"/review/{action['id']}").content.decode()

    steps = re.findall(
        r"<details( open class=\"read-by-rules\")?><summary><span class=\"tag\">tool</span> <code>(\w+)", page
    )
    assert steps == [("", "get_weather"), (' open class="read-by-rules"', "get_order")]
    assert "read by order_was_looked_up" in page


def test_the_results_a_failing_check_read_are_unfolded_and_marked(desk: Client, policy_v1: int, propose: Any) -> None:
    # given: the agent looked up another order than the one it refunds, so the lookup rule fails
    other = {"kind": "tool_call", "tool": "get_order", "args": {"order_id": "A-9"}, "result": {"total": 80}}
    plural = {"kind": "tool_call", "tool": "get_orders", "args": {}, "result": []}
    action = refund(propose, 50, trajectory=[plural, other])

    page = desk.get(f"/review/{action['id']}").content.decode()

    assert action["status"] == "needs_review"
    opened = re.findall(r'<details open class="read-by-rules"><summary><span class="tag">tool</span> <code>(\w+)', page)
    assert opened == ["get_order"]  # get_orders is another tool, not read by the rule
    assert '<span class="read-by read-by-failed"' in page
    assert "unfolded: results the failing checks read" in page


def test_without_a_rule_naming_a_tool_the_last_results_are_unfolded(desk: Client, policy_v1: int, propose: Any) -> None:
    calls = [{"kind": "tool_call", "tool": f"tool_{n}", "args": {}, "result": n} for n in range(4)]
    action = propose({"action_type": "escalate_ticket", "params": {"ticket": "T-1"}, "trajectory": calls}).action

    page = desk.get(f"/review/{action['id']}").content.decode()

    opened = re.findall(r'<details open class="read-by-rules"><summary><span class="tag">tool</span> <code>(\w+)', page)
    assert opened == ["tool_2", "tool_3"]
    assert "unfolded: the last tool results" in page


def test_reject_has_no_preselected_reason(desk: Client, policy_v1: int, propose: Any) -> None:
    action = refund(propose, 500)

    page = desk.get(f"/review/{action['id']}").content.decode()
    form = page[page.index('id="reject-form"') : page.index("</form>", page.index('id="reject-form"'))]
    desk.post(f"/review/{action['id']}/decide", {"verdict": "reject", "preset": "", "reason": ""})

    assert re.findall(r"<option[^>]*selected[^>]*>([^<]*)<", form) == ["— none —"]
    assert '<option value="" selected>' in form
    decided = ProposedAction.objects.get(pk=action["id"])
    assert decided.status == Status.REJECTED
    assert decided.decision.reason == ""


@pytest.mark.parametrize(
    ("query", "expected", "link"),
    [
        ("?q=no-such-thing", "No action matches “no-such-thing”", 'href="?tab=queue" id="clear-search"'),
        (
            "?tab=decided&q=zz&agent=support-bot",
            "No action matches “zz”</strong> with these filters",
            "?tab=decided&amp;agent=",
        ),
        ("?risk=high", "No action matches these filters", 'href="?tab=queue" id="clear-filters"'),
        ("", "Nothing is waiting for review.", None),
        ("?tab=audit", "No audit sample is waiting.", None),
        ("?tab=decided", "Nothing was decided in the last 24 hours.", None),
    ],
)
def test_each_empty_list_says_what_is_empty(
    desk: Client, policy_v1: int, query: str, expected: str, link: str | None
) -> None:
    page = desk.get(f"/review/{query}").content.decode()

    empty = page[page.index('id="empty"') : page.index("</div>", page.index('id="empty"'))]
    assert expected in empty
    assert "Nothing is waiting" not in empty or query == ""
    if link is not None:
        assert link in empty


def test_the_live_queue_gets_only_rows_its_search_lists(desk: Client, policy_v1: int, propose: Any) -> None:
    action = refund(propose, 500)

    assert desk.get(f"/review/{action['id']}/row").status_code == 200
    assert desk.get(f"/review/{action['id']}/row?q=refund").status_code == 200
    assert desk.get(f"/review/{action['id']}/row?q=nothing-like-it").status_code == 404


def banner(page: str) -> str:
    found = re.search(r'<p id="status-banner" class="banner banner-(\w+)"', page)
    assert found, "no status banner"
    return found.group(1)


def test_banners_follow_the_status(desk: Client, policy_v1: int, propose: Any, agent_client: Any) -> None:
    auto = refund(propose, 40)
    held = refund(propose, 500)
    rejected = refund(propose, 600)
    blocked = propose({"action_type": "delete_account", "params": {}}).action
    desk.post(f"/review/{rejected['id']}/decide", {"verdict": "reject", "reason": "wrong order"})
    agent_client.post(f"{auto['url']}/outcome", {"executed": False, "error": "card declined"}, format="json")
    assert (auto["status"], blocked["status"]) == ("auto_approved", "blocked")

    pages = {
        name: desk.get(f"/review/{a['id']}").content.decode()
        for name, a in {"auto": auto, "held": held, "rejected": rejected, "blocked": blocked}.items()
    }

    assert {name: banner(page) for name, page in pages.items()} == {
        "auto": "info",
        "held": "warning",
        "rejected": "error",
        "blocked": "error",
    }
    assert "Auto-approved by policy" in pages["auto"]
    assert "Held for review: <strong>amount</strong> did not pass" in pages["held"]
    assert "Rejected by lead: wrong order." in pages["rejected"]
    # the failed outcome is the auto-approved action's only error
    assert '<p id="outcome-banner" class="banner banner-error" role="alert">' in pages["auto"]
    assert "card declined" in pages["auto"]
    assert "flash-error" not in pages["auto"]


def test_a_reviewer_on_the_ops_page_is_told_it_needs_staff(desk: Client) -> None:
    response = desk.get("/ops/")

    text = response.content.decode()
    assert response.status_code == 403
    assert "needs a staff account" in text
    assert "to the <code>reviewers</code> group" not in text
    assert 'class="topbar"' in text


def test_a_reviewer_on_a_policy_page_is_not_told_to_join_the_reviewers(desk: Client) -> None:
    response = desk.get("/evaluation/whatif/")

    text = response.content.decode()
    assert response.status_code == 403
    assert "Your account (lead) is a reviewer, but this page needs a permission reviewers do not have" in text
    assert "to the <code>reviewers</code> group" not in text


def test_someone_outside_the_reviewers_is_told_to_join_them(db: None) -> None:
    outsider = Client()
    outsider.force_login(UserFactory(username="visitor"))

    text = outsider.get("/review/").content.decode()

    assert "add your account (visitor) to the <code>reviewers</code> group" in text


def test_an_unknown_action_gets_a_404_page_in_the_layout_and_the_api_json(desk: Client, reviewer_client: Any) -> None:
    missing = uuid.uuid4()

    page = desk.get(f"/review/{missing}")
    api = reviewer_client.get(f"/api/v1/actions/{missing}")
    elsewhere = desk.get("/no/such/page")

    assert page.status_code == 404
    assert 'class="topbar"' in page.content.decode()
    assert f"No action has the id <code>{missing}</code>" in page.content.decode()
    assert api.status_code == 404
    assert api.json() == {"detail": "Not found."}
    assert elsewhere.status_code == 404
    assert "There is no page at <code>/no/such/page</code>" in elsewhere.content.decode()


def test_the_help_lists_the_keys_the_pages_answer(desk: Client) -> None:
    page = desk.get("/review/").content.decode()
    source = (Path(__file__).resolve().parents[2] / "static" / "approvals" / "app.js").read_text()

    help_text = page[page.index('<dialog id="keys"') : page.index("</dialog>")]
    for key in ("j", "k", "/", "a", "r", "u", "Esc", "l", "?", "Enter"):
        assert f"<kbd>{key}</kbd>" in help_text
    assert "with the chosen reason" not in help_text
    for key in ('"j"', '"k"', '"/"', '"a"', '"r"', '"u"', '"Escape"', '"l"', '"?"', '"Enter"'):
        assert key in source
