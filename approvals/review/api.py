"""The reviewer API (contract §3): the queue, decisions, labels, remembered approvals."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import django_filters
import django_filters.rest_framework
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.api.permissions import IsReviewer, request_reviewer
from approvals.api.serializers import (
    ActionSerializer,
    DecisionInputSerializer,
    LabelInputSerializer,
    LabelSerializer,
    RememberedApprovalSerializer,
)
from approvals.gate.api import ERROR
from approvals.gate.representation import action_representation, remembered_approval_representation
from approvals.models import ProposedAction, RememberedApproval
from approvals.review import selectors, services


def _existing(action_id: UUID) -> None:
    if not selectors.action_exists(action_id):
        raise Http404("No such action.")


def _reviewable(request: Request, action_id: UUID) -> None:
    """404 for no such action, 403 (NotReviewerOf) for one of a type the reviewer does not review."""
    try:
        services.action_review_check(action_id=str(action_id), user=request_reviewer(request))
    except ProposedAction.DoesNotExist:
        raise Http404("No such action.") from None


class ActionDecisionView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        request=DecisionInputSerializer,
        responses={200: ActionSerializer, 400: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        summary="Approve (with edited params, if need be) or reject a held action; a type with approvals_required "
        "N stays held until N distinct reviewers approved; an approval may be remembered (remember_minutes)",
    )
    def post(self, request: Request, action_id: UUID) -> Response:
        serializer = DecisionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        _existing(action_id)
        action = services.action_decide(
            action_id=str(action_id), user=request_reviewer(request), **serializer.validated_data
        )
        return Response(action_representation(action))


class ActionLabelsView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        responses={200: LabelSerializer(many=True), 403: ERROR, 404: ERROR}, summary="Labels of an action, newest first"
    )
    def get(self, request: Request, action_id: UUID) -> Response:
        _reviewable(request, action_id)
        return Response(LabelSerializer(selectors.action_labels(action_id), many=True).data)

    @extend_schema(
        request=LabelInputSerializer,
        responses={201: LabelSerializer, 403: ERROR, 404: ERROR},
        summary="Record the ground truth of an action",
    )
    def post(self, request: Request, action_id: UUID) -> Response:
        serializer = LabelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        _reviewable(request, action_id)
        try:
            action = selectors.review_action(action_id)
        except ProposedAction.DoesNotExist:
            raise Http404("No such action.") from None
        label = services.label_create(action=action, author=request_reviewer(request), **serializer.validated_data)
        return Response(LabelSerializer(label).data, status=status.HTTP_201_CREATED)


class QueueFilter(django_filters.FilterSet):
    action_type = django_filters.CharFilter(field_name="action_type__name")
    agent = django_filters.CharFilter(field_name="agent__name")

    class Meta:
        model = ProposedAction
        fields = ["action_type", "agent"]


class ReviewQueueView(generics.ListAPIView):
    """The held actions the reviewer may review (their types' review groups, contract §6.3)."""

    permission_classes = [IsReviewer]
    serializer_class = ActionSerializer
    filterset_class = QueueFilter

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema's introspection: no reviewer
            return ProposedAction.objects.none()
        return selectors.review_queue(request_reviewer(self.request)).prefetch_related("labels__author")


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
        return selectors.remembered_approvals()


class RememberedApprovalRevokeView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        request=None,
        responses={200: RememberedApprovalSerializer, 401: ERROR, 403: ERROR, 404: ERROR},
        summary="Revoke a remembered approval: it approves nothing more (what it approved stays approved)",
    )
    def post(self, request: Request, remembered_id: int) -> Response:
        try:
            remembered = selectors.remembered_approval(remembered_id)
        except RememberedApproval.DoesNotExist:
            raise Http404("No such remembered approval.") from None
        services.remembered_approval_revoke(remembered=remembered, user=request_reviewer(request))
        return Response(remembered_approval_representation(selectors.remembered_approval(remembered_id)))
