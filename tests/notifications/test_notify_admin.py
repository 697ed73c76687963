"""The admin: who a type tells (its form, checked by the policy format's parser), and a reviewer's
Slack user id (inline on the user's page, unique)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from approvals.models import ActionType, PolicyVersion, ReviewerProfile
from tests.factories import ReviewerFactory, UserFactory
from tests.test_admin import form

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_the_type_form_saves_notify_emails_one_a_line(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/approvals/actiontype/add/",
        form(notify_emails="ops@example.com\n lead@example.com, cfo@example.com\n", notify_slack="on"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    saved = ActionType.objects.get(name="refund")
    assert saved.notify_emails == ["ops@example.com", "lead@example.com", "cfo@example.com"]
    assert saved.notify_slack is True
    assert PolicyVersion.objects.get().document["action_types"][0]["notify_emails"] == saved.notify_emails


def test_the_type_form_refuses_a_bad_address_and_saves_nothing(admin_client: Client) -> None:
    response = admin_client.post("/admin/approvals/actiontype/add/", form(notify_emails="ops@example.com\nnobody"))

    assert response.status_code == 200
    assert "&#x27;nobody&#x27; is not a valid e-mail address" in response.content.decode()
    assert not ActionType.objects.exists()


def test_the_user_page_edits_the_reviewer_slack_user_id(admin_client: Client) -> None:
    reviewer = ReviewerFactory(username="lead")

    page = admin_client.get(f"/admin/auth/user/{reviewer.pk}/change/")

    assert page.status_code == 200
    assert 'name="reviewer_profile-0-slack_user_id"' in page.content.decode()


def test_a_slack_user_id_belongs_to_one_reviewer() -> None:
    ReviewerProfile.objects.create(user=ReviewerFactory(), slack_user_id="U0LEAD")
    ReviewerProfile.objects.create(user=ReviewerFactory(), slack_user_id="")  # many without one

    with pytest.raises(ValidationError, match="Slack user id is recorded for another reviewer"):
        ReviewerProfile(user=ReviewerFactory(), slack_user_id="U0LEAD").full_clean()
    assert ReviewerProfile(user=ReviewerFactory(), slack_user_id="").full_clean() is None
