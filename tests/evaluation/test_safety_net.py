"""The safety net of policy changes (contract §6.2): the most recent labelled actions of a type
replayed under a new policy and the live one, in one bounded query per type plus the pure engine;
and the threshold apply of the evaluation page and API, which asks before going live."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from approvals import policy
from approvals.evaluation.safety_net import TypeChange, safety_net_replay
from approvals.gate.selectors import action_type_spec, compiled_policy_for
from approvals.models import ActionType, AuditEvent, LabelValue, PolicyVersion, Status
from tests.conftest import LOOKED_UP
from tests.factories import AgentFactory, ProposedActionFactory, UserFactory
from tests.labelled_history import amount_history

pytestmark = pytest.mark.django_db


def raised_limit(limit: float) -> TypeChange:
    refund = ActionType.objects.get(name="refund")
    spec = action_type_spec(refund)
    candidate = policy.compile_policy(policy.parse_action_type({**spec.to_document(), "max_auto_amount": limit}), 0)
    return TypeChange("refund", candidate, compiled_policy_for(refund))


def test_the_replay_is_one_query_per_type_and_names_what_it_would_newly_let_through(
    django_assert_num_queries: Any,
) -> None:
    actions = amount_history()
    change = raised_limit(200)

    with django_assert_num_queries(1):
        report = safety_net_replay([change])

    assert [(case.id, case.live_status) for case in report.unsafe] == [(str(actions["mid_unsafe"].id), "needs_review")]
    assert (report.replayed, report.safe_newly_auto_approved, report.per_type) == (5, 1, {"refund": 5})


def test_a_type_the_change_leaves_as_it_is_is_not_replayed(django_assert_num_queries: Any) -> None:
    amount_history()
    refund = ActionType.objects.get(name="refund")
    live = compiled_policy_for(refund)
    document = {**action_type_spec(refund).to_document(), "description": "reworded", "tests": []}
    same = TypeChange("refund", policy.compile_policy(policy.parse_action_type(document), 0), live)

    with django_assert_num_queries(0):
        report = safety_net_replay([same])

    assert (report.replayed, report.per_type) == (0, {"refund": 0})
    assert safety_net_replay([raised_limit(100.5)]).replayed == 5


def test_only_the_most_recent_labelled_actions_are_replayed(settings: Any) -> None:
    actions = amount_history()  # mid_unsafe (150) is older than mid_safe (180), large_safe, unlooked_unsafe

    assert len(safety_net_replay([raised_limit(200)], recent=3).unsafe) == 0
    assert safety_net_replay([raised_limit(200)], recent=3).replayed == 3
    settings.GATE_SAFETY_NET_RECENT = 4
    assert [case.id for case in safety_net_replay([raised_limit(200)]).unsafe] == [str(actions["mid_unsafe"].id)]


def test_unlabelled_actions_are_not_part_of_the_history() -> None:
    amount_history()
    agent = AgentFactory(name="other")
    refund = ActionType.objects.get(name="refund")
    ProposedActionFactory(action_type=refund, agent=agent, status=Status.NEEDS_REVIEW, params={"amount": 150})

    assert safety_net_replay([raised_limit(200)]).replayed == 5


def test_five_hundred_labelled_actions_replay_in_one_query(django_assert_num_queries: Any) -> None:
    amount_history()
    refund = ActionType.objects.get(name="refund")
    agent = AgentFactory(name="bulk")
    evaluated = timezone.now()
    for index in range(500):
        amount = 150 + index % 100
        ProposedActionFactory(
            action_type=refund,
            agent=agent,
            params={"order_id": "A-1", "amount": amount},
            trajectory=policy.normalize_trajectory(LOOKED_UP),
            status=Status.REJECTED if index % 10 == 0 else Status.APPROVED,
            ground_truth=LabelValue.UNSAFE if index % 10 == 0 else LabelValue.SAFE,
            evaluated_at=evaluated,
            findings=[],
        )
    change = raised_limit(300)

    started = time.monotonic()
    with django_assert_num_queries(1):
        report = safety_net_replay([change])
    seconds = time.monotonic() - started

    assert report.replayed == 500
    assert len(report.unsafe) == 50
    assert report.safe_newly_auto_approved == 450
    print(f"\nsafety net: 500 labelled actions replayed in {seconds * 1000:.0f} ms")


# --- threshold apply: the evaluation page and the API ----------------------------------------------


@pytest.fixture
def admin_browser() -> Client:
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_the_evaluation_page_asks_before_applying_thresholds_that_let_an_unsafe_action_through(
    admin_browser: Client,
) -> None:
    actions = amount_history()
    versions = PolicyVersion.objects.count()
    unsafe = str(actions["mid_unsafe"].id)

    confirm = admin_browser.post(
        "/evaluation/apply", {"action_type": "refund", "auto_approve_max_risk": "0.3", "max_auto_amount": "200"}
    )

    assert confirm.status_code == 409
    page = confirm.content.decode()
    assert f'<a href="/review/{unsafe}"><code>{unsafe}</code></a>' in page
    assert '<strong id="safe-newly-auto-approved">1</strong>' in page
    assert ActionType.objects.get(name="refund").max_auto_amount == 100
    assert PolicyVersion.objects.count() == versions

    form = re.search(r'<form method="post" action="([^"]+)" id="accept-risk-form">(.*?)</form>', page, re.S)
    assert form is not None
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form[2]))
    assert fields["_accept_risk"] == unsafe
    applied = admin_browser.post(form[1], {name: html.unescape(value) for name, value in fields.items()}, follow=True)

    assert applied.redirect_chain[-1][0].startswith("/evaluation/?sweep=refund")
    assert f"is live as policy_version {versions + 1}" in applied.content.decode()
    assert ActionType.objects.get(name="refund").max_auto_amount == 200
    accepted = AuditEvent.objects.get(event="policy_risk_accepted")
    assert (accepted.actor, [case["id"] for case in accepted.data["accepted"]]) == ("user:root", [unsafe])
    assert AuditEvent.objects.filter(event="thresholds_applied").count() == 1


def test_the_api_answers_409_with_the_cases_and_applies_with_accept_risk() -> None:
    actions = amount_history()
    admin = UserFactory(username="boss", is_superuser=True, is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin).key}")
    body = {"action_type": "refund", "auto_approve_max_risk": 0.3, "max_auto_amount": 200}

    refused = client.post("/api/v1/evaluation/sweep/apply", body, format="json")

    assert refused.status_code == 409
    answer = refused.json()
    assert [case["id"] for case in answer["unsafe_newly_auto_approved"]] == [str(actions["mid_unsafe"].id)]
    assert (answer["safe_newly_auto_approved"], answer["replayed"]) == (1, 5)
    assert ActionType.objects.get(name="refund").max_auto_amount == 100

    applied = client.post("/api/v1/evaluation/sweep/apply", {**body, "accept_risk": True}, format="json")

    assert applied.status_code == 200
    assert applied.json() == {"policy_version": ActionType.objects.get(name="refund").policy_version}
    assert AuditEvent.objects.filter(event="policy_risk_accepted").count() == 1
