"""Webhook deliveries: sending one (the worker), and an operator's redelivery. A delivery row is
written by the transition it announces (approvals.lifecycle) and queued by the outbox."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals.integrations import webhooks
from approvals.lifecycle.audit import audit_record
from approvals.models import WebhookDelivery
from approvals.ops import logging as gate_logging

logger = logging.getLogger(__name__)


def webhook_deliver(*, delivery_id: int) -> str:
    """Send one delivery; returns its state. Never holds a transaction while the network is used."""
    delivery = WebhookDelivery.objects.select_related("action__agent").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
        return delivery.state if delivery else "missing"
    gate_logging.bind_action(delivery.action)
    body = delivery.body.encode()
    headers = {
        webhooks.EVENT_HEADER: delivery.event,
        webhooks.SIGNATURE_HEADER: webhooks.sign(delivery.action.agent.webhook_secret, body),
        "X-Gate-Delivery": str(delivery.pk),
        "User-Agent": "autonomy-gate-webhooks/1",
    }
    status_code: int | None = None
    error = ""
    refused = False
    try:
        status_code = webhooks.post(delivery.url, body, headers).status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except webhooks.WebhookRefused as exc:
        refused, error = True, str(exc)
    except Exception as exc:  # network errors: retried
        error = f"{type(exc).__name__}: {exc}"
    attempts = delivery.attempts + 1
    if not error:
        state = WebhookDelivery.State.DELIVERED
    elif refused or attempts >= settings.GATE_WEBHOOK_MAX_ATTEMPTS:
        state = WebhookDelivery.State.FAILED
    else:
        state = WebhookDelivery.State.PENDING
    WebhookDelivery.objects.filter(pk=delivery.pk, state=WebhookDelivery.State.PENDING).update(
        attempts=attempts,
        state=state,
        last_status_code=status_code,
        last_error=error[:2000],
        delivered_at=timezone.now() if state == WebhookDelivery.State.DELIVERED else None,
    )
    if state == WebhookDelivery.State.FAILED:
        logger.warning("webhook delivery %s to %s failed: %s", delivery.pk, delivery.url, error)
    return state


def webhook_redeliver(*, delivery: WebhookDelivery, actor: str) -> WebhookDelivery:
    """An operator sends a delivery again (the admin's redelivery button): a new delivery row."""
    with transaction.atomic():
        again = WebhookDelivery.objects.create(
            action=delivery.action, event=delivery.event, url=delivery.url, body=delivery.body
        )
        audit_record(
            action=delivery.action,
            event="webhook_redelivered",
            actor=actor,
            data={"delivery": delivery.pk, "new_delivery": again.pk, "event": delivery.event},
        )
        transaction.on_commit(lambda: _enqueue(again.pk))
    return again


def _enqueue(delivery_id: int) -> None:
    from approvals.integrations.tasks import deliver_webhook

    try:
        deliver_webhook.delay(delivery_id)
    except Exception:
        logger.warning("could not queue webhook delivery %s", delivery_id, exc_info=True)
