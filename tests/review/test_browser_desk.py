"""The reviewer's desk in Debian's Chromium against the real stack (uvicorn, a Celery worker,
PostgreSQL, Redis): the undo window of a decision, a reject that sends no made-up reason, the
label form behind "l", the why-held column, a badge that changes colour on a live update, and
the queue at 390 px. One server and one browser serve the whole module; each test logs in anew."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from approvals.gate.policies import policies_import
from tests.conftest import LOOKED_UP, TEST_POLICY, uvicorn_server
from tests.factories import AgentFactory, ReviewerFactory
from tests.review.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.review.test_browser import log_in as reviewer_log_in

UNDO_SECONDS = 5  # static/approvals/app.js

if not Path(CHROMIUM).exists() and os.environ.get("CI") != "true":
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def desk_server(celery_worker_process: str, tmp_path_factory: Any) -> Iterator[str]:
    """One uvicorn (HTTP and websockets) for the module, on the test database."""
    with uvicorn_server(tmp_path_factory.mktemp("desk") / "uvicorn.log", args=("--workers", "2")) as base:
        yield base


@pytest.fixture(scope="module")
def chromium(desk_server: str) -> Iterator[Any]:
    """One browser for the module. Playwright's sync API keeps its event loop marked running in this
    thread for as long as the browser is open, so Django would refuse every ORM call here, the test
    database's flush between tests included. Nothing of ours runs on that loop (Playwright only
    waits on it), so while the browser is open Django's guard is lifted, and set back afterwards."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def people(desk_server: str, chromium: Any) -> dict[str, Any]:
    policies_import(document=TEST_POLICY, actor="test")
    return {"agent": AgentFactory(name="support-bot"), "reviewer": ReviewerFactory(username="rosa")}


@pytest.fixture
def base(desk_server: str, people: dict[str, Any]) -> str:
    return desk_server


def log_in(browser: Any, base: str, *, width: int = 1280, height: int = 900, username: str = "rosa") -> Any:
    """The desk's reviewer (rosa, made by ``people``) logged in, the live queue open."""
    return reviewer_log_in(browser, base, username, width=width, height=height)


def held_refund(base: str, agent: Any, amount: float = 500) -> str:
    response = httpx.post(
        f"{base}/api/v1/actions?wait=10",
        json={"action_type": "refund", "params": {"order_id": "A-1", "amount": amount}, "trajectory": LOOKED_UP},
        headers={"Authorization": f"Bearer {agent.token}"},
        timeout=20,
    )
    assert response.json()["status"] == "needs_review"
    return str(response.json()["id"])


def read(base: str, agent: Any, action_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{base}/api/v1/actions/{action_id}", headers={"Authorization": f"Bearer {agent.token}"}, timeout=10
    )
    return dict(response.json())


def open_action(page: Any, base: str, action_id: str) -> None:
    page.goto(f"{base}/review/{action_id}")
    page.wait_for_selector("#live[data-state=open]")


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Screenshots for the README when GATE_SCREENSHOTS names a folder (docs/screenshots)."""
    folder = os.environ.get("GATE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)


def test_a_opens_an_undo_window_and_u_esc_or_leaving_decide_nothing(
    base: str, people: dict[str, Any], chromium: Any
) -> None:
    agent = people["agent"]
    action_id = held_refund(base, agent)
    page = log_in(chromium, base)
    open_action(page, base, action_id)

    # "a" names what it is about to do, and "u" takes it back
    page.keyboard.press("a")
    assert page.locator("#pending").is_visible()
    assert page.locator("#pending-text").inner_text() == f"Approving refund {action_id[:8]}…"
    assert "undo" in page.locator("#pending").inner_text()
    shot(page, "undo", full_page=False)
    page.keyboard.press("u")
    assert page.locator("#pending").is_hidden()

    # the Approve button opens the same window; Esc takes it back
    page.click("#approve-form button[type=submit]")
    assert page.locator("#pending-text").inner_text() == f"Approving refund {action_id[:8]}…"
    page.keyboard.press("Escape")
    assert page.locator("#pending").is_hidden()

    # leaving the page during the window decides nothing
    page.keyboard.press("a")
    assert page.locator("#pending").is_visible()
    page.goto(f"{base}/review/")
    time.sleep(UNDO_SECONDS + 1)

    assert read(base, agent, action_id)["status"] == "needs_review"
    assert read(base, agent, action_id)["decision"] is None


def test_a_then_waiting_approves_and_a_a_approves_at_once(base: str, people: dict[str, Any], chromium: Any) -> None:
    agent = people["agent"]
    waited, confirmed = held_refund(base, agent, 500), held_refund(base, agent, 600)
    page = log_in(chromium, base)

    # "a" and nothing else: decided when the window ends
    open_action(page, base, waited)
    page.keyboard.press("a")
    started = time.monotonic()
    page.wait_for_url(lambda url: not url.endswith(waited), timeout=(UNDO_SECONDS + 10) * 1000)
    assert time.monotonic() - started >= UNDO_SECONDS - 0.5
    assert read(base, agent, waited)["status"] == "approved"

    # "a a": decided at once
    open_action(page, base, confirmed)
    page.keyboard.press("a")
    page.keyboard.press("a")
    started = time.monotonic()
    page.wait_for_url(lambda url: not url.endswith(confirmed), timeout=UNDO_SECONDS * 1000)
    assert time.monotonic() - started < UNDO_SECONDS
    decided = read(base, agent, confirmed)
    assert decided["status"] == "approved"
    assert decided["decision"]["by"] == "rosa"
    assert decided["decision"]["reason"] == ""


def test_reject_sends_no_reason_unless_one_is_typed(base: str, people: dict[str, Any], chromium: Any) -> None:
    agent = people["agent"]
    silent, explained = held_refund(base, agent, 500), held_refund(base, agent, 600)
    page = log_in(chromium, base)

    # "r" focuses an empty reason; Enter opens the window; Enter confirms
    open_action(page, base, silent)
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.id") == "reject-reason"
    assert page.input_value("#reject-reason") == ""
    assert page.input_value("#reject-preset") == ""
    page.keyboard.press("Enter")
    assert page.locator("#pending-text").inner_text() == f"Rejecting refund {silent[:8]}…"
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: not url.endswith(silent), timeout=UNDO_SECONDS * 1000)

    # a typed reason is what the agent is told; "r" again confirms
    open_action(page, base, explained)
    page.keyboard.press("r")
    page.keyboard.type("wrong order: A-2 was damaged, not A-1")
    page.keyboard.press("Enter")
    page.keyboard.press("r")
    page.wait_for_url(lambda url: not url.endswith(explained), timeout=UNDO_SECONDS * 1000)

    assert read(base, agent, silent)["status"] == "rejected"
    assert read(base, agent, silent)["decision"]["reason"] == ""
    assert read(base, agent, explained)["decision"]["reason"] == "wrong order: A-2 was damaged, not A-1"


def test_l_opens_the_label_form_ready_to_save(base: str, people: dict[str, Any], chromium: Any) -> None:
    agent = people["agent"]
    action_id = held_refund(base, agent)
    page = log_in(chromium, base)
    open_action(page, base, action_id)

    page.keyboard.press("l")
    assert page.evaluate("document.activeElement.name + '=' + document.activeElement.value") == "label=safe"
    assert "active" in (page.get_attribute("#label", "class") or "")
    assert page.locator("#label-form").is_visible()
    page.keyboard.press("ArrowDown")  # choose
    page.keyboard.press("Enter")  # save
    page.wait_for_selector(".flash-success")

    assert page.locator(".flash-success").first.inner_text() == "Labelled unsafe."
    assert read(base, agent, action_id)["status"] == "needs_review"  # a label is not a decision
    assert [(label["label"], label["by"]) for label in read(base, agent, action_id)["labels"]] == [("unsafe", "rosa")]


def test_the_queue_says_why_each_action_is_held(base: str, people: dict[str, Any], chromium: Any) -> None:
    agent = people["agent"]
    action_id = held_refund(base, agent, 700)
    others = [
        {"action_type": "refund", "params": {"order_id": "B-7", "amount": 60}, "trajectory": []},
        {"action_type": "escalate_ticket", "params": {"ticket": "T-19", "queue": "billing"}},
    ]
    for body in others:
        response = httpx.post(
            f"{base}/api/v1/actions?wait=10", json=body, headers={"Authorization": f"Bearer {agent.token}"}, timeout=20
        )
        assert response.json()["status"] == "needs_review"
    page = log_in(chromium, base)

    why = page.locator(f'#queue tr.row[data-id="{action_id}"] td.why .check')

    assert why.first.locator("strong").inner_text() == "amount"
    assert why.first.get_attribute("title") == "amount: amount 700 is above max_auto_amount 100"
    assert page.locator("#queue thead").inner_text().upper().count("WHY HELD") == 1
    assert page.locator("#queue td.why strong").all_inner_texts().count("order_was_looked_up") == 1
    shot(page, "queue")


def test_the_badge_changes_colour_when_a_decision_arrives_live(
    base: str, people: dict[str, Any], chromium: Any
) -> None:
    from rest_framework.authtoken.models import Token

    action_id = held_refund(base, people["agent"])
    token = Token.objects.create(user=people["reviewer"]).key
    page = log_in(chromium, base)
    open_action(page, base, action_id)
    assert page.get_attribute("#status", "class") == "status status-needs_review"
    assert page.get_attribute("#status-banner", "class") == "banner banner-warning"
    shot(page, "detail")

    # when: someone approves it through the API while the page is open
    response = httpx.post(
        f"{base}/api/v1/actions/{action_id}/decision",
        json={"verdict": "approve"},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert response.status_code == 200

    # then: the badge takes the approved colour, the banner turns info, the forms are disabled
    page.wait_for_selector("#status.status-approved", timeout=15000)
    assert page.get_attribute("#status", "class") == "status status-approved"
    assert page.locator("#status").inner_text() == "Approved"
    assert page.get_attribute("#status-banner", "class") == "banner banner-info"
    assert page.locator("#approve-form button[type=submit]").is_disabled()


def test_the_queue_keeps_its_params_at_390_px(base: str, people: dict[str, Any], chromium: Any) -> None:
    action_id = held_refund(base, people["agent"], 800)
    page = log_in(chromium, base, width=390, height=844)
    row = f'#queue tr.row[data-id="{action_id}"]'

    params = page.locator(f"{row} td.summary")
    box = params.bounding_box()

    assert params.is_visible()
    assert "amount=800" in params.inner_text()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 390
    assert page.locator(f"{row} td.why").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "queue-narrow")

    open_action(page, base, action_id)
    assert page.locator("dl.params").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "detail-narrow")
