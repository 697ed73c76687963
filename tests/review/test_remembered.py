"""Remembered approvals ("apply to similar actions in this session"), end to end against the real
database: the services and the eager evaluation, the reviewer API and the reviewer's desk."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.errors import ServiceError
from approvals.gate.policies import policies_import
from approvals.gate.services import action_evaluate, action_propose, request_fingerprint
from approvals.models import ActionType, Agent, AuditEvent, ProposedAction, RememberedApproval, Status
from approvals.review.services import action_decide, remembered_approval_revoke
from tests.factories import AgentFactory, UserFactory

pytestmark = pytest.mark.django_db

SESSION = "run-7/session-1"

POLICY: dict[str, Any] = {
    "version": 1,
    "action_types": [
        {
            "name": "refund",
            "params_schema": {
                "type": "object",
                "required": ["order_id", "amount"],
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
            },
            "amount_path": "amount",
            "max_auto_amount": 100,
            "rules": [
                {
                    "name": "order_was_looked_up",
                    "require": "trajectory.exists(s, s.tool == 'get_order' && s.args.order_id == params.order_id)",
                    "on_fail": "review",
                },
                {"name": "not_a_frozen_order", "require": "!params.order_id.startsWith('FROZEN')", "on_fail": "block"},
                # Errs (division by zero) when params.divisor is 0: a rule error holds the action.
                {"name": "divisor_is_one", "require": "!has(params.divisor) || 1 / params.divisor == 1"},
            ],
        },
        {"name": "resend_invoice", "params_schema": {"type": "object"}, "mode": "review"},
    ],
}


def looked_up(order_id: str) -> list[dict[str, Any]]:
    return [{"kind": "tool_call", "tool": "get_order", "args": {"order_id": order_id}, "result": {"total": 900}}]


@pytest.fixture
def gate(db: None) -> int:
    return policies_import(document=POLICY, actor="test")


@pytest.fixture
def bot(gate: int) -> Agent:
    return AgentFactory(name="support-bot")


def proposed(
    agent: Agent,
    params: dict[str, Any],
    *,
    type_name: str = "refund",
    session: str | None = SESSION,
    trajectory: Any = None,
    capture: Any,
    evaluate: bool = True,
) -> ProposedAction:
    """Propose through the service; with ``evaluate`` the commit's queued evaluation runs (Celery eager)."""
    trajectory = looked_up(params.get("order_id", "")) if trajectory is None else trajectory
    body = {"action_type": type_name, "params": params, "trajectory": trajectory, "session": session}
    with capture(execute=evaluate):
        action, created = action_propose(
            agent=agent,
            action_type=ActionType.objects.get(name=type_name),
            params=params,
            fingerprint=request_fingerprint(body),
            trajectory_raw=trajectory,
            context={"session_id": session} if session else {},
        )
    assert created
    action.refresh_from_db()
    return action


@pytest.fixture
def propose(bot: Agent, django_capture_on_commit_callbacks: Any) -> Any:
    def _propose(params: dict[str, Any], *, agent: Agent | None = None, **kwargs: Any) -> ProposedAction:
        return proposed(agent or bot, params, capture=django_capture_on_commit_callbacks, **kwargs)

    return _propose


@pytest.fixture
def remembered(propose: Any, reviewer: Any) -> RememberedApproval:
    """A reviewer approved a refund over the amount limit, for similar ones of its session for an hour."""
    source = propose({"order_id": "A-1", "amount": 500})
    assert source.status == Status.NEEDS_REVIEW
    action_decide(action_id=str(source.id), user=reviewer, verdict="approve", remember_minutes=60)
    return RememberedApproval.objects.get(source_action=source)


def audit(action: ProposedAction, event: str) -> AuditEvent:
    return AuditEvent.objects.get(action=action, event=event)


# --- services and evaluation --------------------------------------------------------------------------


def test_approve_with_remember_stores_what_it_accepts(remembered: RememberedApproval, reviewer: Any) -> None:
    source = remembered.source_action
    assert source.status == Status.APPROVED
    assert remembered.session_id == SESSION
    assert remembered.failed == ["amount"]
    assert remembered.reviewer == reviewer
    assert remembered.expires_at == source.decided_at + timedelta(minutes=60)
    assert audit(source, "decided").data["remembered_approval"] == remembered.pk


def test_a_later_similar_proposal_is_auto_approved_naming_the_remembered_approval(
    remembered: RememberedApproval, propose: Any
) -> None:
    later = propose({"order_id": "A-2", "amount": 300})

    assert later.status == Status.AUTO_APPROVED
    assert later.remembered_approval_id == remembered.pk
    finding = next(f for f in later.findings if f["rule"] == "remembered_approval")
    assert finding["remembered_approval"] == remembered.pk
    assert finding["outcome"] == "pass"
    assert str(remembered.pk) in later.decision.reason
    assert later.decision.by_policy
    event = audit(later, "evaluated")
    assert (event.to_status, event.data["remembered_approval"]) == (Status.AUTO_APPROVED, remembered.pk)
    assert remembered.applied_to.count() == 1


def test_failing_a_check_outside_the_remembered_ones_is_held(remembered: RememberedApproval, propose: Any) -> None:
    never_looked_up = propose({"order_id": "A-3", "amount": 300}, trajectory=[])
    small_but_never_looked_up = propose({"order_id": "A-4", "amount": 20}, trajectory=[])

    for action in (never_looked_up, small_but_never_looked_up):
        assert action.status == Status.NEEDS_REVIEW
        assert action.remembered_approval_id is None
        assert all(f["rule"] != "remembered_approval" for f in action.findings)


def test_other_session_agent_or_type_is_not_covered(remembered: RememberedApproval, propose: Any) -> None:
    other_session = propose({"order_id": "A-5", "amount": 300}, session="another")
    no_session = propose({"order_id": "A-6", "amount": 300}, session=None)
    other_agent = propose({"order_id": "A-7", "amount": 300}, agent=AgentFactory(name="other-bot"))
    other_type = propose({"invoice": "I-1"}, type_name="resend_invoice", trajectory=[])

    for action in (other_session, no_session, other_agent, other_type):
        assert action.status == Status.NEEDS_REVIEW
        assert action.remembered_approval_id is None


def test_a_review_type_is_never_remembered(propose: Any, reviewer: Any, bot: Agent) -> None:
    # Contract §6.3 narrows §5: "always a person" (mode: review) means every time.
    source = propose({"invoice": "I-1"}, type_name="resend_invoice", trajectory=[])
    with pytest.raises(ServiceError, match="never remembered"):
        action_decide(action_id=str(source.id), user=reviewer, verdict="approve", remember_minutes=15)
    source.refresh_from_db()
    assert source.status == Status.NEEDS_REVIEW  # the refused request changed nothing
    # Even a remembered approval of the type (made before the rule, say) covers none of its actions.
    RememberedApproval.objects.create(
        source_action=source,
        agent=bot,
        action_type=source.action_type,
        session_id=SESSION,
        failed=["mode"],
        reviewer=reviewer,
        expires_at=timezone.now() + timedelta(minutes=15),
    )

    again = propose({"invoice": "I-2"}, type_name="resend_invoice", trajectory=[])

    assert again.status == Status.NEEDS_REVIEW
    assert again.remembered_approval_id is None


def test_an_action_proposed_before_the_approval_is_not_covered(
    propose: Any, reviewer: Any, bot: Agent, django_capture_on_commit_callbacks: Any
) -> None:
    source = propose({"order_id": "A-1", "amount": 500})
    earlier = propose({"order_id": "A-2", "amount": 300}, evaluate=False)
    assert earlier.status == Status.PENDING
    action_decide(action_id=str(source.id), user=reviewer, verdict="approve", remember_minutes=60)

    action_evaluate(action_id=str(earlier.id))

    earlier.refresh_from_db()
    assert earlier.status == Status.NEEDS_REVIEW
    assert earlier.remembered_approval_id is None


def test_expired_and_revoked_approvals_cover_nothing(
    remembered: RememberedApproval, propose: Any, reviewer: Any
) -> None:
    RememberedApproval.objects.filter(pk=remembered.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    after_expiry = propose({"order_id": "A-2", "amount": 300})
    assert after_expiry.status == Status.NEEDS_REVIEW

    second = propose({"order_id": "A-3", "amount": 400})
    action_decide(action_id=str(second.id), user=reviewer, verdict="approve", remember_minutes=60)
    covered = propose({"order_id": "A-4", "amount": 300})
    assert covered.status == Status.AUTO_APPROVED
    revoked = remembered_approval_revoke(remembered=RememberedApproval.objects.get(source_action=second), user=reviewer)
    after_revoke = propose({"order_id": "A-5", "amount": 300})

    assert after_revoke.status == Status.NEEDS_REVIEW
    assert revoked.revoked_by == reviewer
    covered.refresh_from_db()
    assert covered.status == Status.AUTO_APPROVED  # what it approved stays approved
    event = audit(second, "remembered_approval_revoked")
    assert event.data == {"remembered_approval": revoked.pk, "applied_to": 1}
    assert event.actor == f"user:{reviewer.username}"


def test_a_rule_error_is_never_covered(propose: Any, reviewer: Any) -> None:
    source = propose({"order_id": "A-1", "amount": 500, "divisor": 0})
    assert source.status == Status.NEEDS_REVIEW
    action_decide(action_id=str(source.id), user=reviewer, verdict="approve", remember_minutes=60)
    assert RememberedApproval.objects.get().failed == ["divisor_is_one"]  # step 4 held it before the amount

    same_again = propose({"order_id": "A-2", "amount": 20, "divisor": 0})

    assert same_again.status == Status.NEEDS_REVIEW
    assert any(f["rule"] == "divisor_is_one" and f["outcome"] == "error" for f in same_again.findings)
    assert same_again.remembered_approval_id is None


def test_what_blocks_stays_blocked(remembered: RememberedApproval, propose: Any) -> None:
    frozen = propose({"order_id": "FROZEN-1", "amount": 300})
    invalid = propose({"order_id": "A-2", "amount": "all"})

    for action in (frozen, invalid):
        assert action.status == Status.BLOCKED
        assert action.remembered_approval_id is None
    assert remembered.applied_to.count() == 0


def test_only_an_approval_of_an_action_with_a_session_is_remembered(propose: Any, reviewer: Any) -> None:
    held = propose({"order_id": "A-1", "amount": 500})
    no_session = propose({"order_id": "A-2", "amount": 500}, session=None)

    with pytest.raises(ServiceError, match="only an approval"):
        action_decide(action_id=str(held.id), user=reviewer, verdict="reject", remember_minutes=60)
    with pytest.raises(ServiceError, match="session_id"):
        action_decide(action_id=str(no_session.id), user=reviewer, verdict="approve", remember_minutes=60)

    assert not RememberedApproval.objects.exists()
    assert ProposedAction.objects.filter(status=Status.NEEDS_REVIEW).count() == 2


# --- the API ----------------------------------------------------------------------------------------


def test_api_approve_with_remember(propose: Any, reviewer_client: APIClient, reviewer: Any) -> None:
    held = propose({"order_id": "A-1", "amount": 500})

    response = reviewer_client.post(
        f"/api/v1/actions/{held.id}/decision", {"verdict": "approve", "remember_minutes": 240}, format="json"
    )
    later = propose({"order_id": "A-2", "amount": 300})

    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    remembered = RememberedApproval.objects.get()
    assert remembered.expires_at - remembered.source_action.decided_at == timedelta(hours=4)
    shown = reviewer_client.get(f"/api/v1/actions/{later.id}").json()
    assert shown["status"] == "auto_approved"
    assert shown["remembered_approval"] == remembered.pk
    assert shown["decision"]["by"] == "policy"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"verdict": "approve", "remember_minutes": 0}, "remember_minutes"),
        ({"verdict": "approve", "remember_minutes": 1441}, "remember_minutes"),
        ({"verdict": "approve", "remember_minutes": "soon"}, "remember_minutes"),
        ({"verdict": "reject", "remember_minutes": 60}, "detail"),
    ],
)
def test_api_refuses_a_bad_remember(propose: Any, reviewer_client: APIClient, body: dict, field: str) -> None:
    held = propose({"order_id": "A-1", "amount": 500})

    response = reviewer_client.post(f"/api/v1/actions/{held.id}/decision", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    held.refresh_from_db()
    assert held.status == Status.NEEDS_REVIEW
    assert not RememberedApproval.objects.exists()


def test_api_refuses_to_remember_without_a_session(propose: Any, reviewer_client: APIClient) -> None:
    held = propose({"order_id": "A-1", "amount": 500}, session=None)

    response = reviewer_client.post(
        f"/api/v1/actions/{held.id}/decision", {"verdict": "approve", "remember_minutes": 60}, format="json"
    )

    assert response.status_code == 400
    assert "session_id" in response.json()["detail"]
    held.refresh_from_db()
    assert held.status == Status.NEEDS_REVIEW


def test_api_revoke(remembered: RememberedApproval, propose: Any, reviewer_client: APIClient, bot: Agent) -> None:
    propose({"order_id": "A-2", "amount": 300})
    agent_client = APIClient()
    agent_client.credentials(HTTP_AUTHORIZATION=f"Bearer {bot.token}")
    url = f"/api/v1/remembered-approvals/{remembered.pk}/revoke"

    assert APIClient().post(url).status_code == 401
    assert agent_client.post(url).status_code == 403
    assert RememberedApproval.objects.get().revoked_at is None
    response = reviewer_client.post(url)
    again = reviewer_client.post(url)

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("id", "session_id", "failed", "reviewer", "applied_to")} == {
        "id": remembered.pk,
        "session_id": SESSION,
        "failed": ["amount"],
        "reviewer": "lead",
        "applied_to": 1,
    }
    assert body["expires_at"].endswith("Z")
    assert body["revoked_at"] is not None
    assert again.status_code == 200
    assert again.json()["revoked_at"] == body["revoked_at"]  # revoking twice changes nothing
    assert AuditEvent.objects.filter(event="remembered_approval_revoked").count() == 1
    assert reviewer_client.post("/api/v1/remembered-approvals/999999/revoke").status_code == 404


def test_api_lists_remembered_approvals(
    remembered: RememberedApproval, propose: Any, reviewer: Any, reviewer_client: APIClient, bot: Agent
) -> None:
    other = propose({"order_id": "A-9", "amount": 900}, session="another")
    action_decide(action_id=str(other.id), user=reviewer, verdict="approve", remember_minutes=15)
    remembered_approval_revoke(remembered=remembered, user=reviewer)
    agent_client = APIClient()
    agent_client.credentials(HTTP_AUTHORIZATION=f"Bearer {bot.token}")

    everything = reviewer_client.get("/api/v1/remembered-approvals").json()
    active = reviewer_client.get("/api/v1/remembered-approvals?active=1").json()
    inactive = reviewer_client.get("/api/v1/remembered-approvals?active=0").json()

    assert everything["count"] == 2
    assert [r["session_id"] for r in active["results"]] == ["another"]
    assert active["results"][0]["revoked_at"] is None
    assert active["results"][0]["applied_to"] == 0
    assert [r["id"] for r in inactive["results"]] == [remembered.pk]
    assert agent_client.get("/api/v1/remembered-approvals").status_code == 403


# --- the reviewer's desk ------------------------------------------------------------------------------


@pytest.fixture
def browser(reviewer: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    return client


def csrf_post(client: Client, url: str, data: dict[str, Any], **kwargs: Any) -> Any:
    """POST as the page's form does: with the token from the page's own form."""
    page = client.get(url.rsplit("/decide", 1)[0]).content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    return client.post(url, {**data, "csrfmiddlewaretoken": token}, **kwargs)


def test_the_approve_form_offers_to_remember_and_says_what_it_will_approve(propose: Any, browser: Client) -> None:
    held = propose({"order_id": "A-1", "amount": 500}, trajectory=[])
    no_session = propose({"order_id": "A-2", "amount": 500}, session=None)

    page = browser.get(f"/review/{held.id}").content.decode()
    plain = browser.get(f"/review/{no_session.id}").content.decode()

    assert "Apply to similar actions in this session" in page
    assert 'name="remember_minutes"' in page
    assert '<option value="60" selected>1 h</option>' in page
    for minutes in (15, 240, 1440):
        assert f'<option value="{minutes}">' in page
    # order_was_looked_up held it (step 4) before the amount was checked: only it is remembered
    assert "failing only: <code>order_was_looked_up</code> (never one" in page
    assert f"<code>{SESSION}</code>" in page
    assert "<strong>support-bot</strong>" in page
    assert 'id="remember-until"' in page
    assert "Apply to similar actions" not in plain


def test_remember_round_trip_in_the_browser(propose: Any, browser: Client, reviewer: Any) -> None:
    held = propose({"order_id": "A-1", "amount": 500})

    decided = csrf_post(
        browser, f"/review/{held.id}/decide", {"verdict": "approve", "remember": "1", "remember_minutes": "15"}
    )
    remembered = RememberedApproval.objects.get()
    later = propose({"order_id": "A-2", "amount": 300})
    later_page = browser.get(f"/review/{later.id}").content.decode()
    source_page = browser.get(f"/review/{held.id}").content.decode()

    assert decided.status_code == 302
    assert remembered.expires_at - remembered.source_action.decided_at == timedelta(minutes=15)
    assert later.status == Status.AUTO_APPROVED
    assert f'href="/review/{held.id}">remembered approval {remembered.pk}</a>' in later_page
    assert "lead approved a refund" in later_page
    assert f"Remembered approval {remembered.pk}</strong>" in source_page
    assert "badge-remembered-active" in source_page
    assert "It approved 1 action." in source_page
    assert ">Revoke</button>" in source_page

    revoked = csrf_post(browser, f"/review/{held.id}", {"remembered": str(remembered.pk)}, follow=True)

    remembered.refresh_from_db()
    assert remembered.revoked_at is not None
    assert remembered.revoked_by == reviewer
    page = revoked.content.decode()
    assert "Revoked: similar actions of session" in page
    assert "badge-remembered-revoked" in page
    assert ">Revoke</button>" not in page
    assert AuditEvent.objects.filter(action=held, event="remembered_approval_revoked").count() == 1
    assert propose({"order_id": "A-3", "amount": 300}).status == Status.NEEDS_REVIEW


def test_the_browser_shows_errors_of_a_bad_remember(propose: Any, browser: Client) -> None:
    held = propose({"order_id": "A-1", "amount": 500})
    no_session = propose({"order_id": "A-2", "amount": 500}, session=None)

    rejected = csrf_post(
        browser,
        f"/review/{held.id}/decide",
        {"verdict": "reject", "remember": "1", "remember_minutes": "60"},
        follow=True,
    )
    too_long = csrf_post(
        browser,
        f"/review/{held.id}/decide",
        {"verdict": "approve", "remember": "1", "remember_minutes": "9999"},
        follow=True,
    )
    garbled = csrf_post(
        browser, f"/review/{held.id}/decide", {"verdict": "approve", "remember": "1", "remember_minutes": "x"}
    )
    sessionless = csrf_post(
        browser,
        f"/review/{no_session.id}/decide",
        {"verdict": "approve", "remember": "1", "remember_minutes": "60"},
        follow=True,
    )

    assert "only an approval can be remembered" in rejected.content.decode()
    assert "remember_minutes must be between 1 and 1440" in too_long.content.decode()
    assert garbled.status_code == 302
    assert "no context.session_id" in sessionless.content.decode()
    assert ProposedAction.objects.filter(status=Status.NEEDS_REVIEW).count() == 2
    assert not RememberedApproval.objects.exists()


def test_revoking_from_another_actions_page_is_refused(
    remembered: RememberedApproval, propose: Any, browser: Client
) -> None:
    other = propose({"order_id": "A-2", "amount": 900}, session="another")

    response = csrf_post(browser, f"/review/{other.id}", {"remembered": str(remembered.pk)}, follow=True)

    assert "no such remembered approval of this action" in response.content.decode()
    remembered.refresh_from_db()
    assert remembered.revoked_at is None


def test_revoking_needs_a_reviewer(remembered: RememberedApproval) -> None:
    outsider = Client()
    outsider.force_login(UserFactory())

    response = outsider.post(f"/review/{remembered.source_action_id}", {"remembered": str(remembered.pk)})

    assert response.status_code == 403
    remembered.refresh_from_db()
    assert remembered.revoked_at is None


# --- lapse (contract §6.1): the world refused what "yes, and the same again" approved ------------------


def test_a_covered_action_reported_not_executed_lapses_the_approval(
    remembered: RememberedApproval, propose: Any, bot: Agent
) -> None:
    from approvals.gate.services import action_report_outcome

    covered = propose({"order_id": "A-2", "amount": 300})
    assert covered.remembered_approval_id == remembered.pk
    action_report_outcome(action_id=str(covered.id), agent=bot, executed=False, error="card declined")

    remembered.refresh_from_db()
    assert remembered.revoked_at is not None
    assert remembered.revoked_by is None
    assert remembered.lapsed_reason == f"action {covered.id} was reported as not executed"
    assert audit(covered, "outcome_reported").data["lapsed_remembered_approvals"] == [remembered.pk]
    # and it covers nothing any more: the next similar refund is held for a person
    assert propose({"order_id": "A-3", "amount": 300}).status == Status.NEEDS_REVIEW


def test_the_approved_action_itself_reported_not_executed_lapses_it(remembered: RememberedApproval, bot: Agent) -> None:
    from approvals.gate.services import action_report_outcome

    action_report_outcome(action_id=str(remembered.source_action_id), agent=bot, executed=False)
    remembered.refresh_from_db()
    assert remembered.revoked_at is not None
    assert str(remembered.source_action_id) in remembered.lapsed_reason


def test_an_executed_outcome_keeps_the_approval(remembered: RememberedApproval, propose: Any, bot: Agent) -> None:
    from approvals.gate.services import action_report_outcome

    covered = propose({"order_id": "A-2", "amount": 300})
    action_report_outcome(action_id=str(covered.id), agent=bot, executed=True)
    remembered.refresh_from_db()
    assert remembered.revoked_at is None
    assert "lapsed_remembered_approvals" not in audit(covered, "outcome_reported").data
