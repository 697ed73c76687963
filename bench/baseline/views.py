"""A bare DRF create: the same authentication, parser and row as POST /api/v1/actions, none of the gate.

POST /bench/baseline/actions[?wait=S] inserts a ProposedAction through the ORM and queues one
Celery task on commit (bench.baseline.tasks.touch_row, which updates the row); with ``wait`` the
request is held until the task has run (the bare Celery round trip), through the same Redis
pub/sub wait the gate uses.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.lifecycle import events
from approvals.models import ActionType, ProposedAction, Status
from bench.baseline.tasks import touch_row


def _action_type(name: str) -> ActionType:
    """The row's foreign key, resolved from the name sent as any DRF endpoint would (one indexed
    look-up per request; the gate does the same, and may not cache it: a type disabled in the admin
    is refused at once)."""
    try:
        return ActionType.objects.only("id").get(name=name)
    except ActionType.DoesNotExist:
        raise ParseError(f"Unknown action type {name}.") from None


class BareCreateView(APIView):
    def post(self, request: Request) -> Response:
        body: Any = request.data
        if not isinstance(body, dict) or "action_type" not in body:
            raise ParseError("The body must be a JSON object with an action_type.")
        trajectory = body.get("trajectory")
        with transaction.atomic():
            action = ProposedAction.objects.create(
                agent=request.user,
                action_type=_action_type(body["action_type"]),
                params=body.get("params", {}),
                trajectory_raw=trajectory,
                # The gate stores the trajectory twice (as given and normalised): so does the
                # baseline, as given in both columns, so both write rows of the same size.
                trajectory=trajectory if trajectory is not None else [],
                idempotency_key=request.headers.get("Idempotency-Key"),
                request_fingerprint="",
            )
            transaction.on_commit(partial(touch_row.delay, str(action.id)))
        status = action.status
        wait = float(request.query_params.get("wait") or 0)
        if wait:  # as the gate waits: the status read, the wait, the row read again
            status_of = ProposedAction.objects.filter(pk=action.id).values_list("status", flat=True).first
            events.wait_for(str(action.id), min(wait, 30.0), status_of, lambda s: s != Status.PENDING)
            status = status_of()
        return Response({"id": str(action.id), "status": status}, status=201)
