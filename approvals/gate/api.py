"""The agent API (contract §2): propose, read (and wait for) an action, withdraw it, report what
happened. Each view parses, calls a service or a selector, and answers the one representation."""

from __future__ import annotations

import math
from collections.abc import Callable
from uuid import UUID

from django.conf import settings
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.api.permissions import IsAgentOrReviewer, IsEnabledAgent, request_agent
from approvals.api.serializers import ActionSerializer, OutcomeInputSerializer, ProposeSerializer
from approvals.errors import NotPermitted
from approvals.gate import selectors, services
from approvals.gate.representation import action_representation
from approvals.gate.tasks import evaluate_action
from approvals.lifecycle import events
from approvals.models import FINAL_STATUSES, Agent, ProposedAction, Status
from approvals.ops import tracing

ERROR = OpenApiResponse(response=OpenApiTypes.OBJECT, description="A JSON error body")
WAIT = OpenApiParameter("wait", OpenApiTypes.NUMBER, description="Seconds to hold the response (0-30)")


def wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError({"wait": ["Must be a number of seconds."]}) from None
    if not math.isfinite(value) or value < 0:
        raise ValidationError({"wait": ["Must be between 0 and 30 seconds."]})
    return min(value, float(settings.GATE_MAX_WAIT_SECONDS))


def _shown(request: Request, action_id: UUID | str) -> ProposedAction:
    try:
        return selectors.actions_shown_to(request.user).get(pk=action_id)
    except ProposedAction.DoesNotExist:
        raise Http404("No such action.") from None


def _after_waiting(
    request: Request, action: ProposedAction, done: Callable[[str | None], bool], *, seconds: float
) -> ProposedAction:
    """The action after waiting up to ``seconds`` until ``done`` holds for its status. The wait
    reads only the status; the action is read again once, at the end, when it was waited for."""
    if not seconds or done(action.status):
        return action
    events.wait_for(str(action.id), seconds, lambda: selectors.action_status(action.pk), done)
    return _shown(request, action.pk)


class ActionCollectionView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=ProposeSerializer,
        parameters=[WAIT, OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER)],
        responses={
            201: ActionSerializer,
            200: ActionSerializer,
            400: ERROR,
            401: ERROR,
            403: ERROR,
            409: ERROR,
            413: ERROR,
        },
        summary="Propose an action",
    )
    def post(self, request: Request) -> Response:
        if not tracing.ENABLED:
            return self._propose(request)
        with tracing.proposal_span(request.headers) as span:
            response = self._propose(request)
            tracing.proposal_answered(span, response.data, created=response.status_code == status.HTTP_201_CREATED)
            return response

    def _propose(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ParseError("The body must be a JSON object.")
        # Checked before anything is stored: a bad ?wait= must not leave an action behind.
        seconds = wait_seconds(request)
        data = dict(body)
        header_key = request.headers.get("Idempotency-Key")
        if header_key is not None:
            if data.get("idempotency_key") not in (None, header_key):
                raise ValidationError({"idempotency_key": ["Differs from the Idempotency-Key header."]})
            data["idempotency_key"] = header_key
        serializer = ProposeSerializer(data=data)
        serializer.is_valid(raise_exception=True)

        agent = request.user
        if not isinstance(agent, Agent):
            raise PermissionDenied("Only agents propose actions (Authorization: Bearer <agent token>).")
        try:
            action, created = services.action_propose_validated(
                agent=agent, values=serializer.validated_data, body=body
            )
        except NotPermitted as exc:
            raise PermissionDenied(exc.message) from exc
        done = lambda status: status != Status.PENDING  # noqa: E731
        # Embedded (tasks run eagerly on commit) the stored action may already be decided, and a
        # replay is as it stands now: read it again. With a worker, a new action is as it was
        # stored: answered without another query.
        if not created or bool(evaluate_action.app.conf.task_always_eager):
            action = _after_waiting(request, _shown(request, action.pk), done, seconds=seconds)
            representation = action_representation(action)
        else:
            waited = _after_waiting(request, action, done, seconds=seconds)
            representation = action_representation(waited, new=waited is action)
        return Response(representation, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ActionDetailView(APIView):
    permission_classes = [IsAgentOrReviewer]

    @extend_schema(
        parameters=[WAIT],
        responses={200: ActionSerializer, 401: ERROR, 403: ERROR, 404: ERROR},
        summary="Get an action",
    )
    def get(self, request: Request, action_id: UUID) -> Response:
        seconds = wait_seconds(request)
        action = _shown(request, action_id)
        action = _after_waiting(request, action, lambda status: status in FINAL_STATUSES, seconds=seconds)
        return Response(action_representation(action))


class ActionCancelView(APIView):
    permission_classes = [IsEnabledAgent]

    @extend_schema(
        request=None, responses={200: ActionSerializer, 404: ERROR, 409: ERROR}, summary="Withdraw an action"
    )
    def post(self, request: Request, action_id: UUID) -> Response:
        try:  # another agent's action does not exist for this one
            action = services.action_cancel(action_id=str(action_id), agent=request_agent(request))
        except ProposedAction.DoesNotExist:
            raise Http404("No such action.") from None
        return Response(action_representation(action))


class ActionOutcomeView(APIView):
    permission_classes = [IsEnabledAgent]

    @extend_schema(
        request=OutcomeInputSerializer,
        responses={200: ActionSerializer, 400: ERROR, 404: ERROR, 409: ERROR},
        summary="Report what happened when the agent acted (once, approved actions only)",
    )
    def post(self, request: Request, action_id: UUID) -> Response:
        serializer = OutcomeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            action = services.action_report_outcome(
                action_id=str(action_id), agent=request_agent(request), **serializer.validated_data
            )
        except ProposedAction.DoesNotExist:
            raise Http404("No such action.") from None
        return Response(action_representation(action))
