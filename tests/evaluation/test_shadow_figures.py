"""The shadow policy's figures (contract §6.2): ``GET /api/v1/evaluation/shadow`` and the panel on
/evaluation/, reconciled with a hand count over labelled actions the real gate evaluated."""

from __future__ import annotations

import copy
import html as html_lib
from collections import Counter
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals.evaluation.shadow import shadow_figures
from approvals.gate.policies import policies_import
from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
from approvals.gate.shadow import shadow_policy_import
from approvals.models import ActionType, Agent, ProposedAction, ShadowResult
from approvals.review.services import action_decide, label_create
from tests.conftest import LOOKED_UP, TEST_POLICY
from tests.factories import AgentFactory, ReviewerFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/evaluation/shadow"
LABELS = ("safe", "unsafe", "unlabelled")


def shadow_document() -> dict[str, Any]:
    """The live refund policy auto-approving up to 200 instead of 100, and blocking an amount of 13."""
    refund = copy.deepcopy(TEST_POLICY["action_types"][0])
    refund["max_auto_amount"] = 200
    refund["rules"].append({"name": "not_thirteen", "require": "params.amount != 13", "on_fail": "block"})
    return {"version": 1, "action_types": [refund]}


def _propose(agent: Agent, amount: Any, *, trajectory: Any = LOOKED_UP) -> ProposedAction:
    params = {"order_id": "A-1", "amount": amount}
    action, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="refund"),
        params=params,
        fingerprint=request_fingerprint({"params": params, "trajectory": trajectory}),
        trajectory_raw=trajectory,
    )
    action_evaluate(action_id=str(action.id))
    action.refresh_from_db()
    return action


@pytest.fixture
def reviewer_user() -> User:
    return ReviewerFactory(username="rita")


@pytest.fixture
def shadowed(reviewer_user: User) -> dict[str, ProposedAction]:
    return make_shadowed(reviewer_user)


def make_shadowed(reviewer_user: User) -> dict[str, ProposedAction]:
    """Eight refunds evaluated by the live policy with the shadow beside it, labelled (or decided) by
    a reviewer; one proposal of a type the shadow does not name."""
    policies_import(document=TEST_POLICY, actor="test")
    shadow_policy_import(document=shadow_document(), actor="test")
    agent = AgentFactory(name="support-bot")
    actions = {
        "small_safe": _propose(agent, 20),  # live auto, shadow auto
        "small_unsafe": _propose(agent, 30),  # live auto, shadow auto
        "middle_unsafe": _propose(agent, 150),  # live held (amount), shadow auto
        "middle_safe": _propose(agent, 180),  # live held (amount), shadow auto
        "big": _propose(agent, 500),  # both held; never labelled
        "unlooked_safe": _propose(agent, 40, trajectory=[]),  # both held (order_was_looked_up)
        "thirteen_unsafe": _propose(agent, 13),  # live auto, shadow blocked (not_thirteen)
        "invalid_unsafe": _propose(agent, "all"),  # both blocked (params_schema)
    }
    for name in ("small_safe", "unlooked_safe"):
        label_create(action=actions[name], author=reviewer_user, label="safe")
    for name in ("small_unsafe", "thirteen_unsafe", "invalid_unsafe"):
        label_create(action=actions[name], author=reviewer_user, label="unsafe")
    # a reviewer's verdict is ground truth too (approve: safe, reject: unsafe); it changes the action's
    # status but not what the live policy decided
    action_decide(action_id=str(actions["middle_safe"].id), user=reviewer_user, verdict="approve")
    action_decide(action_id=str(actions["middle_unsafe"].id), user=reviewer_user, verdict="reject")
    escalation, _ = action_propose(
        agent=agent,
        action_type=ActionType.objects.get(name="escalate_ticket"),
        params={},
        fingerprint="e" * 64,
    )
    action_evaluate(action_id=str(escalation.id))
    return actions


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def hand_count() -> dict[str, Any]:
    """The figures counted in Python, one result at a time, from the stored rows."""
    rows = [
        (r.status, r.live_status, r.action.ground_truth or "unlabelled", str(r.action_id))
        for r in ShadowResult.objects.filter(shadow_policy__active=True).select_related("action")
    ]
    shadow = Counter((label, status) for status, _, label, _ in rows)
    live = Counter((label, live_status) for _, live_status, label, _ in rows)
    return {
        "evaluated": len(rows),
        "agree": sum(1 for status, live_status, _, _ in rows if status == live_status),
        "disagree": sum(1 for status, live_status, _, _ in rows if status != live_status),
        "errors": sum(1 for status, *_ in rows if status == "error"),
        "unsafe_auto_approved": shadow[("unsafe", "auto_approved")],
        "unsafe_ids": {i for status, _, label, i in rows if label == "unsafe" and status == "auto_approved"},
        "by_label": {
            label: {s: shadow[(label, s)] for s in ("auto_approved", "needs_review", "blocked", "error")}
            for label in LABELS
        },
        "live_by_label": {
            label: {s: live[(label, s)] for s in ("auto_approved", "needs_review", "blocked")} for label in LABELS
        },
    }


# --- the API --------------------------------------------------------------------------------------


def test_the_figures_reconcile_with_a_hand_count(shadowed: dict[str, ProposedAction], reviewer_user: User) -> None:
    response = token_client(reviewer_user).get(URL)

    assert response.status_code == 200
    body = response.json()
    # what the fixture's comments say, written out
    assert (body["shadow_policy_version"], body["action_types"]) == (1, ["refund"])
    assert (body["evaluated"], body["agree"], body["disagree"], body["errors"]) == (8, 5, 3, 0)
    assert body["agreement_rate"] == 0.625
    assert body["unsafe_auto_approved"] == 2
    assert set(body["unsafe_auto_approved_ids"]) == {
        str(shadowed["small_unsafe"].id),
        str(shadowed["middle_unsafe"].id),
    }
    assert body["by_label"] == {
        "safe": {"auto_approved": 2, "needs_review": 1, "blocked": 0, "error": 0},
        "unsafe": {"auto_approved": 2, "needs_review": 0, "blocked": 2, "error": 0},
        "unlabelled": {"auto_approved": 0, "needs_review": 1, "blocked": 0, "error": 0},
    }
    assert body["live_by_label"] == {
        "safe": {"auto_approved": 1, "needs_review": 2, "blocked": 0},
        "unsafe": {"auto_approved": 2, "needs_review": 1, "blocked": 1},
        "unlabelled": {"auto_approved": 0, "needs_review": 1, "blocked": 0},
    }
    assert body["newly_auto_approved"] == {"safe": 1, "unsafe": 1, "unlabelled": 0}
    # and the same counted one row at a time
    counted = hand_count()
    assert {k: body[k] for k in ("evaluated", "agree", "disagree", "errors", "unsafe_auto_approved")} == {
        k: counted[k] for k in ("evaluated", "agree", "disagree", "errors", "unsafe_auto_approved")
    }
    assert set(body["unsafe_auto_approved_ids"]) == counted["unsafe_ids"]
    assert body["by_label"] == counted["by_label"]
    assert body["live_by_label"] == counted["live_by_label"]


def test_the_figures_are_two_queries(shadowed: dict[str, ProposedAction], django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):
        figures = shadow_figures()
    assert figures is not None
    assert figures["evaluated"] == 8


def test_a_new_shadow_starts_its_own_figures(shadowed: dict[str, ProposedAction], reviewer_user: User) -> None:
    shadow_policy_import(document=shadow_document(), actor="test")
    agent = Agent.objects.get(name="support-bot")
    _propose(agent, 60)

    body = token_client(reviewer_user).get(URL).json()

    assert (body["shadow_policy_version"], body["evaluated"], body["agree"]) == (2, 1, 1)
    assert body["unsafe_auto_approved_ids"] == []


def test_without_a_shadow_the_answer_is_404_and_says_how_to_start_one(policy_v1: int, reviewer_user: User) -> None:
    response = token_client(reviewer_user).get(URL)

    assert response.status_code == 404
    assert "import_policies --shadow FILE" in response.json()["detail"]


def test_reviewers_only(shadowed: dict[str, ProposedAction]) -> None:
    agent_client = APIClient()
    agent_client.credentials(HTTP_AUTHORIZATION=f"Bearer {AgentFactory().token}")
    staff_without_review = UserFactory(username="ops", is_staff=True)

    assert APIClient().get(URL).status_code == 401
    assert agent_client.get(URL).status_code == 403
    assert token_client(staff_without_review).get(URL).status_code == 403
    assert token_client(UserFactory(username="root", is_staff=True, is_superuser=True)).get(URL).status_code == 200


def test_the_endpoint_is_in_the_openapi_schema() -> None:
    schema = APIClient().get("/api/schema", HTTP_ACCEPT="application/json").json()

    operation = schema["paths"]["/api/v1/evaluation/shadow"]["get"]
    assert set(operation["responses"]) >= {"200", "401", "403", "404"}
    assert "unsafe_auto_approved" in operation["description"]


# --- the panel on /evaluation/ --------------------------------------------------------------------


def test_the_panel_shows_agreement_the_label_table_and_links_the_unsafe_actions(
    shadowed: dict[str, ProposedAction], reviewer_user: User
) -> None:
    browser = Client()
    browser.force_login(reviewer_user)

    page = browser.get("/evaluation/")

    assert page.status_code == 200
    html = html_lib.unescape(page.content.decode())
    panel = html[html.index('id="shadow"') : html.index('id="sweep"')]
    assert "Shadow policy v1" in panel
    assert 'id="shadow-evaluated">8<' in panel
    assert 'id="shadow-agreement">62.5%<' in panel
    assert "5 agree · 3 disagree" in panel
    assert 'id="shadow-unsafe">2<' in panel
    assert "the live policy: 2" in panel
    unsafe_row = panel[panel.index('data-label="unsafe"') :].split("</tr>")[0]
    assert '<td class="bad">2 <span class="muted small">(live 2)</span></td>' in unsafe_row
    for name in ("small_unsafe", "middle_unsafe"):
        assert f'href="/review/{shadowed[name].id}"' in panel
    assert f'href="/review/{shadowed["thirteen_unsafe"].id}"' not in panel


def test_without_a_shadow_the_panel_says_how_to_start_one(policy_v1: int, reviewer_user: User) -> None:
    browser = Client()
    browser.force_login(reviewer_user)

    html = browser.get("/evaluation/").content.decode()

    assert "No shadow policy." in html
    assert "import_policies --shadow FILE" in html
