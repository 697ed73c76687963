"""The e-mail of a held action (contract §6.3): to the type's ``notify_emails``, through Django's
e-mail settings (EMAIL_HOST, EMAIL_PORT, ... from the environment), plain text and HTML."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from approvals.notifications.notice import Notice


def held_email(notice: Notice, recipients: list[str]) -> EmailMultiAlternatives:
    context = {"notice": notice}
    message = EmailMultiAlternatives(
        subject=notice.subject,
        body=render_to_string("approvals/email/held_action.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"X-Gate-Action": notice.action_id},
    )
    message.attach_alternative(render_to_string("approvals/email/held_action.html", context), "text/html")
    return message


def held_email_send(notice: Notice, recipients: list[str]) -> None:
    """Send it now (SMTP errors propagate: the caller retries)."""
    held_email(notice, recipients).send(fail_silently=False)
