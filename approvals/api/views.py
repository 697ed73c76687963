"""The contract's evaluation summary (§3)."""

from __future__ import annotations

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import selectors
from approvals.api.permissions import IsReviewer
from approvals.api.serializers import storable_moment


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
        return Response(
            selectors.evaluation_summary(action_type=request.query_params.get("action_type") or None, since=since)
        )
