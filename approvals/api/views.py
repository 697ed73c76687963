"""Thin API views: parse, call a service or selector, serialize."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from uuid import UUID

import django_filters
import django_filters.rest_framework
from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import events, selectors, services
from approvals.api.permissions import (
    IsAgentOrReviewer,
    IsEnabledAgent,
    IsReviewer,
    request_agent,
    request_reviewer,
)
from approvals.api.serializers import (
    ActionSerializer,
    DecisionInputSerializer,
    LabelInputSerializer,
    LabelSerializer,
    OutcomeInputSerializer,
    ProposeSerializer,
    RememberedApprovalSerializer,
    action_representation,
    remembered_approval_representation,
    storable_moment,
)
from approvals.evaluation.figures import evaluation_summary
from approvals.models import FINAL_STATUSES, Agent, ProposedAction, RememberedApproval, Status
from approvals.tasks import evaluate_action

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


def _as_created(action: ProposedAction) -> None:
    """A just-created action has no decision and no labels: its representation needs no query."""
    action._state.fields_cache["decision"] = None
    action.has_labels = False  # type: ignore[attr-defined]
    selectors.labels_read(action)


def _held(
    request: Request, action: ProposedAction, done: Callable[[str | None], bool], *, seconds: float, reload: bool
) -> ProposedAction:
    """The action after waiting up to ``seconds`` until ``done`` holds for its status; ``reload``
    reads it again even without waiting (after proposing, the embedded mode has evaluated it on
    commit). The wait reads only the status; the action is read once, at the end."""
    if not reload and (not seconds or done(action.status)):
        return action
    if seconds and not done(action.status):
        status = ProposedAction.objects.filter(pk=action.pk).values_list("status", flat=True)
        events.wait_for(str(action.id), seconds, status.first, done)
    return selectors.labels_read(selectors.actions_shown_to(request.user).get(pk=action.pk))


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
        values = serializer.validated_data

        agent = request.user
        if not isinstance(agent, Agent):
            raise PermissionDenied("Only agents propose actions (Authorization: Bearer <agent token>).")
        try:
            action, created = services.action_propose_validated(agent=agent, values=values, body=body)
        except services.NotPermitted as exc:
            raise PermissionDenied(exc.message) from exc
        # Embedded (tasks run eagerly on commit) the stored action may already be decided: read it
        # again. With a worker, a new action is as it was stored: answer without another query.
        reload = not created or bool(evaluate_action.app.conf.task_always_eager)
        if not reload:
            _as_created(action)
        action = _held(request, action, lambda status: status != Status.PENDING, seconds=seconds, reload=reload)
        return Response(
            action_representation(action), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class ActionDetailView(APIView):
    permission_classes = [IsAgentOrReviewer]

    @extend_schema(
        parameters=[WAIT],
        responses={200: ActionSerializer, 401: ERROR, 403: ERROR, 404: ERROR},
        summary="Get an action",
    )
    def get(self, request: Request, action_id: UUID) -> Response:
        seconds = wait_seconds(request)
        action = selectors.labels_read(get_object_or_404(selectors.actions_shown_to(request.user), pk=action_id))
        action = _held(request, action, lambda status: status in FINAL_STATUSES, seconds=seconds, reload=False)
        return Response(action_representation(action))


class ActionCancelView(APIView):
    permission_classes = [IsEnabledAgent]

    @extend_schema(
        request=None, responses={200: ActionSerializer, 404: ERROR, 409: ERROR}, summary="Withdraw an action"
    )
    def post(self, request: Request, action_id: UUID) -> Response:
        action = get_object_or_404(selectors.actions_visible_to(request.user), pk=action_id)
        action = services.action_cancel(action_id=str(action.pk), agent=request_agent(request))
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
        action = get_object_or_404(selectors.actions_visible_to(request.user), pk=action_id)
        action = services.action_report_outcome(
            action_id=str(action.pk), agent=request_agent(request), **serializer.validated_data
        )
        return Response(action_representation(action))


class ActionDecisionView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        request=DecisionInputSerializer,
        responses={200: ActionSerializer, 404: ERROR, 409: ERROR},
        summary="Approve or reject a held action; an approval may be remembered for the session (remember_minutes)",
    )
    def post(self, request: Request, action_id: UUID) -> Response:
        serializer = DecisionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        get_object_or_404(ProposedAction.objects.only("pk"), pk=action_id)
        action = services.action_decide(
            action_id=str(action_id), user=request_reviewer(request), **serializer.validated_data
        )
        return Response(action_representation(action))


class ActionLabelsView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(responses={200: LabelSerializer(many=True)}, summary="Labels of an action, newest first")
    def get(self, request: Request, action_id: UUID) -> Response:
        action = get_object_or_404(ProposedAction.objects.only("pk"), pk=action_id)
        labels = action.labels.select_related("author")
        return Response(LabelSerializer(labels, many=True).data)

    @extend_schema(
        request=LabelInputSerializer,
        responses={201: LabelSerializer, 404: ERROR},
        summary="Record the ground truth of an action",
    )
    def post(self, request: Request, action_id: UUID) -> Response:
        serializer = LabelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        action = get_object_or_404(ProposedAction.objects.all(), pk=action_id)
        label = services.label_create(action=action, author=request_reviewer(request), **serializer.validated_data)
        return Response(LabelSerializer(label).data, status=status.HTTP_201_CREATED)


class QueueFilter(django_filters.FilterSet):
    action_type = django_filters.CharFilter(field_name="action_type__name")
    agent = django_filters.CharFilter(field_name="agent__name")

    class Meta:
        model = ProposedAction
        fields = ["action_type", "agent"]


class ReviewQueueView(generics.ListAPIView):
    permission_classes = [IsReviewer]
    serializer_class = ActionSerializer
    filterset_class = QueueFilter

    def get_queryset(self) -> Any:
        return selectors.review_queue().prefetch_related("labels__author")


def remembered_approvals_queryset() -> QuerySet[RememberedApproval]:
    return (
        RememberedApproval.objects.select_related("agent", "action_type", "reviewer", "revoked_by")
        .annotate(applied_count=Count("applied_to"))
        .order_by("-created_at", "-pk")
    )


class RememberedApprovalFilter(django_filters.FilterSet):
    active = django_filters.rest_framework.BooleanFilter(
        method="filter_active", label="1: only those still approving (not revoked, not expired); 0: the others"
    )
    action_type = django_filters.CharFilter(field_name="action_type__name")
    agent = django_filters.CharFilter(field_name="agent__name")
    session_id = django_filters.CharFilter()

    class Meta:
        model = RememberedApproval
        fields = ["active", "action_type", "agent", "session_id"]

    def filter_active(
        self, queryset: QuerySet[RememberedApproval], name: str, value: bool | None
    ) -> QuerySet[RememberedApproval]:
        if value is None:
            return queryset
        active = Q(revoked_at__isnull=True, expires_at__gt=timezone.now())
        return queryset.filter(active) if value else queryset.exclude(active)


class RememberedApprovalListView(generics.ListAPIView):
    """Reviewers' approvals extended to similar actions of the same session, newest first."""

    permission_classes = [IsReviewer]
    serializer_class = RememberedApprovalSerializer
    filterset_class = RememberedApprovalFilter

    def get_queryset(self) -> QuerySet[RememberedApproval]:
        return remembered_approvals_queryset()


class RememberedApprovalRevokeView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        request=None,
        responses={200: RememberedApprovalSerializer, 401: ERROR, 403: ERROR, 404: ERROR},
        summary="Revoke a remembered approval: it approves nothing more (what it approved stays approved)",
    )
    def post(self, request: Request, remembered_id: int) -> Response:
        remembered = get_object_or_404(RememberedApproval.objects.only("pk"), pk=remembered_id)
        services.remembered_approval_revoke(remembered=remembered, user=request_reviewer(request))
        return Response(remembered_approval_representation(remembered_approvals_queryset().get(pk=remembered_id)))


class EvaluationSummaryView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("action_type", OpenApiTypes.STR),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
        ],
        responses={200: OpenApiTypes.OBJECT},
        summary="Automation rate and unsafe auto-approvals",
    )
    def get(self, request: Request) -> Response:
        since_raw = request.query_params.get("since")
        since = None
        if since_raw:
            try:
                since = parse_datetime(since_raw)
            except ValueError:
                since = None
            if since is None:
                raise ValidationError({"since": ["Must be an ISO 8601 date-time."]})
            since = storable_moment(since, "since")
        return Response(evaluation_summary(action_type=request.query_params.get("action_type") or None, since=since))
