"""The state changes of the evaluation room: starting a what-if replay.

Applying a sweep's thresholds (``action_type_apply_thresholds``) changes the policy and stays with
the policy services in approvals.gate.policies.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from approvals import policy
from approvals.lifecycle.audit import actor_of_user, audit_record
from approvals.models import WhatIfRun


def whatif_start(*, document: Any, user: User | None) -> WhatIfRun:
    """Validate a candidate policy and queue its replay over the labelled history (Celery)."""
    policy.parse_document(document)  # PolicyError, nothing stored, when it is invalid
    with transaction.atomic():
        run = WhatIfRun.objects.create(document=document, created_by=user)
        audit_record(
            action=None,
            event="whatif_started",
            actor=actor_of_user(user) if user else "system",
            data={"whatif": run.pk},
        )
        run_id = run.pk

        def enqueue() -> None:
            from approvals.evaluation.tasks import whatif_replay

            whatif_replay.delay(run_id)

        transaction.on_commit(enqueue)
    return run
