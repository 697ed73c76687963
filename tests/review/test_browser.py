"""The reviewer's desk in a real browser: Debian's Chromium driven by Playwright against the full
stack on loopback (uvicorn serving HTTP and websockets, a Celery worker, PostgreSQL, Redis)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from approvals.gate.policies import policies_import
from approvals.review.services import actions_enforce_deadlines
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory

CHROMIUM = os.environ.get("GATE_CHROMIUM", "/usr/bin/chromium")
# The flags this sandbox needs: no background networking (nothing but loopback is reachable).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCRIPT = "<script>window.__pwned = 1; alert('x')</script>"

if not Path(CHROMIUM).exists() and os.environ.get("CI") != "true":
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs Debian's chromium)", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people(asgi_server: str) -> dict[str, Any]:
    """Everything the database needs, made before the browser starts: Django refuses ORM calls
    from a thread where Playwright's event loop runs."""
    policies_import(document=TEST_POLICY, actor="test")
    return {
        "agent": AgentFactory(name="support-bot"),
        "reviewers": [ReviewerFactory(username=name) for name in ("ana", "ben", "cleo")],
    }


@pytest.fixture
def chromium(people: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def log_in(browser: Any, base: str, username: str, *, width: int = 1280, height: int = 900) -> Any:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(f"{base}/review/")
    page.fill("#id_username", username)
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/review/")
    page.wait_for_selector("#live[data-state=open]")
    return page


def test_reviewers_see_items_arrive_and_leave_live_and_decide_with_the_keyboard(
    asgi_server: str, people: dict[str, Any], chromium: Any, tmp_path: Path
) -> None:
    # given: a policy, an agent, and two reviewers with the queue open
    agent = people["agent"]
    alerts: list[str] = []
    ana, ben = log_in(chromium, asgi_server, "ana"), log_in(chromium, asgi_server, "ben")
    for page in (ana, ben):
        page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))

    # when: the agent proposes a refund the policy holds, with hostile text in it
    response = httpx.post(
        f"{asgi_server}/api/v1/actions",
        json={
            "action_type": "refund",
            "params": {"order_id": "A-1", "amount": 500, "note": SCRIPT},
            "rationale": SCRIPT,
            "trajectory": [*LOOKED_UP, {"kind": "message", "role": "user", "content": SCRIPT}],
        },
        headers={"Authorization": f"Bearer {agent.token}"},
        timeout=10,
    )
    assert response.status_code == 201
    action_id = response.json()["id"]
    row = f'#queue tr.row[data-id="{action_id}"]'

    # then: it arrives in both open queues without a reload
    ana.wait_for_selector(row, timeout=15000)
    ben.wait_for_selector(row, timeout=15000)
    shot(ana, tmp_path, "queue")

    # ana opens it with the keyboard: j/k select, enter opens
    ana.keyboard.press("k")
    ana.keyboard.press("Enter")
    ana.wait_for_url(f"{asgi_server}/review/{action_id}")
    assert ana.locator(".rationale").inner_text() == SCRIPT  # shown as text, never run
    assert ana.evaluate("window.__pwned") is None
    ben.wait_for_selector(f"{row} .badge-claim")  # ben sees that ana holds it
    shot(ana, tmp_path, "detail")

    # ana approves with "a", confirmed at once with a second "a" (one "a" alone waits out the undo
    # window: tests/review/test_browser_desk.py); the item leaves ben's open queue
    ana.keyboard.press("a")
    ana.keyboard.press("a")
    ana.wait_for_url(f"{asgi_server}/review/")
    ben.wait_for_selector(row, state="detached", timeout=15000)
    decided = httpx.get(
        f"{asgi_server}/api/v1/actions/{action_id}", headers={"Authorization": f"Bearer {agent.token}"}, timeout=10
    ).json()
    assert decided["status"] == "approved"
    assert decided["decision"]["by"] == "ana"
    assert alerts == []


def test_keys_help_and_the_page_keep_working_without_the_socket(asgi_server: str, chromium: Any) -> None:
    page = log_in(chromium, asgi_server, "cleo")

    page.keyboard.press("?")
    assert page.locator("#keys").is_visible()
    page.keyboard.press("Escape")

    # the socket drops (server-side close is simulated by going offline): the page says so
    page.context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    page.context.set_offline(False)
    page.reload()
    page.wait_for_selector("#live[data-state=open]")


def shot(page: Any, tmp_path: Path, name: str) -> None:
    """Screenshots for the README when GATE_SCREENSHOTS names a folder; into tmp otherwise."""
    folder = Path(os.environ.get("GATE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    assert shutil.disk_usage(folder).free > 0


def _in_thread(work: Any) -> None:
    """ORM work while Playwright's loop runs in this thread: done in a thread of its own."""
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not errors, errors


def test_escalation_and_expiry_reach_the_open_queue_live(
    asgi_server: str, people: dict[str, Any], chromium: Any, tmp_path: Path
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from approvals.models import ProposedAction

    agent = people["agent"]
    page = log_in(chromium, asgi_server, "cleo")
    ids = []
    for amount in (500, 600):
        response = httpx.post(
            f"{asgi_server}/api/v1/actions?wait=10",
            json={"action_type": "refund", "params": {"order_id": "A-1", "amount": amount}, "trajectory": LOOKED_UP},
            headers={"Authorization": f"Bearer {agent.token}"},
            timeout=20,
        )
        assert response.json()["status"] == "needs_review"
        ids.append(response.json()["id"])
    late, expiring = ids
    for action_id in ids:
        page.wait_for_selector(f'#queue tr.row[data-id="{action_id}"]', timeout=15000)

    def breach_deadlines() -> None:
        past = timezone.now() - timedelta(seconds=1)
        ProposedAction.objects.filter(pk=late).update(sla_deadline=past)
        ProposedAction.objects.filter(pk=expiring).update(expires_at=past)
        assert actions_enforce_deadlines() == {"expired": 1, "escalated": 1}

    _in_thread(breach_deadlines)
    page.wait_for_selector(f'#queue tr.row.escalated[data-id="{late}"] .badge-escalated', timeout=15000)
    page.wait_for_selector(f'#queue tr.row[data-id="{expiring}"]', state="detached", timeout=15000)
    assert page.locator("#queue tbody tr.row").first.get_attribute("data-id") == late
    shot(page, tmp_path, "escalated")
