"""The evaluation API: figures, per-agent activity, threshold sweeps, rule health, exports and the
shadow policy's figures.

Reads only, for reviewers; applying a sweep's thresholds is for admins.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.http import StreamingHttpResponse
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import policy
from approvals.api.permissions import IsReviewer
from approvals.api.serializers import NumberField, storable_moment
from approvals.errors import UnsafePolicyChange
from approvals.evaluation import exports, figures, rules, selectors, shadow, sweep
from approvals.gate.policies import action_type_apply_thresholds
from approvals.lifecycle.audit import actor_of_user
from approvals.models import Agent

ERROR = OpenApiResponse(response=OpenApiTypes.OBJECT, description="A JSON error body")
# An ISO 8601 date (its midnight) or date-time (naive ones in the server's time zone).
MOMENT = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]}
SINCE = OpenApiParameter("since", MOMENT, description="ISO date or date-time (inclusive)")
UNTIL = OpenApiParameter("until", MOMENT, description="ISO date or date-time (exclusive), later than since")
ACTION_TYPE = OpenApiParameter("action_type", OpenApiTypes.STR)
REQUIRED_ACTION_TYPE = OpenApiParameter("action_type", OpenApiTypes.STR, required=True)
CHANGE_ACTION_TYPE = "approvals.change_actiontype"


def parse_moment(request: Request, name: str) -> datetime | None:
    """An ISO date-time (naive ones in the current time zone) or date (its midnight), or None."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None:
        try:
            day = parse_date(raw)
        except ValueError:
            day = None
        if day is not None:
            moment = datetime(day.year, day.month, day.day)
    if moment is None:
        raise ValidationError({name: ["Must be an ISO 8601 date or date-time."]})
    return storable_moment(moment, name)


def period(request: Request) -> dict[str, datetime | None]:
    since, until = parse_moment(request, "since"), parse_moment(request, "until")
    if since and until and since >= until:
        raise ValidationError({"until": ["Must be later than since."]})
    return {"since": since, "until": until}


def required_action_type(request: Request) -> str:
    name = request.query_params.get("action_type")
    if not name:
        raise ValidationError({"action_type": ["This query parameter is required."]})
    if not selectors.action_type_exists(name):
        raise NotFound(f"No action type named {name!r}.")
    return name


class EvaluationFiguresView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", OpenApiTypes.STR, enum=list(figures.GROUP_BY)),
            ACTION_TYPE,
            OpenApiParameter("agent", OpenApiTypes.STR),
            SINCE,
            UNTIL,
        ],
        responses={200: OpenApiTypes.OBJECT, 400: ERROR, 401: ERROR, 403: ERROR},
        summary="Evaluation figures, overall and per group",
    )
    def get(self, request: Request) -> Response:
        group_by = request.query_params.get("group_by") or None
        if group_by is not None and group_by not in figures.GROUP_BY:
            raise ValidationError({"group_by": [f"Must be one of: {', '.join(figures.GROUP_BY)}."]})
        return Response(
            figures.evaluation_figures(
                group_by=group_by,
                action_type=request.query_params.get("action_type") or None,
                agent=request.query_params.get("agent") or None,
                **period(request),
            )
        )


class EvaluationAgentsView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[SINCE, UNTIL],
        responses={200: OpenApiTypes.OBJECT, 400: ERROR, 401: ERROR, 403: ERROR},
        summary="Per-agent activity, agents busy without progress first",
    )
    def get(self, request: Request) -> Response:
        moments = period(request)
        return Response({"agents": figures.agent_activity(since=moments["since"], until=moments["until"])})


class EvaluationSweepView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[REQUIRED_ACTION_TYPE],
        responses={200: OpenApiTypes.OBJECT, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        summary="Threshold sweep over the type's labelled history, with a recommendation",
    )
    def get(self, request: Request) -> Response:
        return Response(sweep.threshold_sweep(required_action_type(request)))


class EvaluationRulesView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[REQUIRED_ACTION_TYPE],
        responses={200: OpenApiTypes.OBJECT, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        summary="How each check of a type fares against the ground truth",
    )
    def get(self, request: Request) -> Response:
        name = required_action_type(request)
        return Response({"action_type": name, "rules": rules.rule_health(name)})


class EvaluationShadowView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, 401: ERROR, 403: ERROR, 404: ERROR},
        summary="The shadow policy beside the live one: agreement, decisions by label, unsafe auto-approvals",
        description=(
            "Over the actions evaluated since the active shadow policy was imported (contract §6.2): "
            "`evaluated`, `agree`, `disagree` (the shadow's decision against the live policy's), "
            "`unsafe_auto_approved` (actions labelled unsafe that the shadow would auto-approve) and "
            "their ids (`unsafe_auto_approved_ids`, newest first), `by_label` and `live_by_label` "
            "(safe / unsafe / unlabelled x auto_approved / needs_review / blocked, and the shadow's "
            "`error`s). 404 when there is no shadow policy."
        ),
    )
    def get(self, request: Request) -> Response:
        found = shadow.shadow_figures()
        if found is None:
            raise NotFound("There is no shadow policy: import one with manage.py import_policies --shadow FILE.")
        return Response(found)


def _export_filters(request: Request) -> dict[str, Any]:
    return {"action_type": request.query_params.get("action_type") or None, **period(request)}


def _attachment(content: Iterator[str], *, content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class EvaluationExportJSONLView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[ACTION_TYPE, SINCE, UNTIL],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, 400: ERROR, 401: ERROR, 403: ERROR},
        summary="Actions with ground truth as JSONL for manage.py replay",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        rows = exports.labelled_export_rows(**_export_filters(request))
        lines = (json.dumps(row, separators=(",", ":"), default=str) + "\n" for row in rows)
        return _attachment(lines, content_type="application/x-ndjson", filename="labelled.jsonl")


class _Echo:
    """A file-like object for csv.writer that hands back each line instead of storing it."""

    def write(self, value: str) -> str:
        return value


class EvaluationExportCSVView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[ACTION_TYPE, SINCE, UNTIL],
        responses={(200, "text/csv"): OpenApiTypes.STR, 400: ERROR, 401: ERROR, 403: ERROR},
        summary="Actions with ground truth as CSV",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        writer = csv.writer(_Echo())
        rows = exports.labelled_csv_rows(**_export_filters(request))
        return _attachment(
            (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8", filename="labelled.csv"
        )


class CanChangePolicies(BasePermission):
    message = "Admins only: this needs the approvals.change_actiontype permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return (
            user is not None
            and not isinstance(user, Agent)
            and user.is_authenticated
            and (user.is_superuser or user.has_perm(CHANGE_ACTION_TYPE))
        )


class ApplyThresholdsSerializer(serializers.Serializer):
    action_type = serializers.SlugRelatedField(slug_field="name", queryset=selectors.action_types())
    auto_approve_max_risk = NumberField(min_value=0.0, max_value=1.0)
    max_auto_amount = NumberField(allow_null=True, required=False, default=None, min_value=0.0)
    accept_risk = serializers.BooleanField(
        required=False,
        default=False,
        help_text="apply even if the change would newly auto-approve actions labelled unsafe (audited with their ids)",
    )


class EvaluationSweepApplyView(APIView):
    permission_classes = [CanChangePolicies]

    @extend_schema(
        request=ApplyThresholdsSerializer,
        responses={200: OpenApiTypes.OBJECT, 400: ERROR, 401: ERROR, 403: ERROR, 409: ERROR},
        summary="Apply thresholds (a sweep's recommendation) as a new policy version",
        description="409: the change would newly auto-approve actions labelled unsafe in the recent labelled "
        "history (listed in `unsafe_newly_auto_approved`, beside `safe_newly_auto_approved`); nothing changed. "
        "Send `accept_risk: true` to apply it anyway.",
    )
    def post(self, request: Request) -> Response:
        serializer = ApplyThresholdsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        try:
            version = action_type_apply_thresholds(
                action_type=values["action_type"],
                auto_approve_max_risk=values["auto_approve_max_risk"],
                max_auto_amount=values["max_auto_amount"],
                actor=actor_of_user(request.user),  # type: ignore[arg-type]
                accept_risk=values["accept_risk"],
            )
        except policy.PolicyError as exc:
            raise ValidationError({"detail": exc.errors}) from exc
        except UnsafePolicyChange as exc:
            return Response(
                {
                    "detail": exc.message,
                    "unsafe_newly_auto_approved": exc.cases,
                    "safe_newly_auto_approved": exc.safe_newly_auto_approved,
                    "replayed": exc.replayed,
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response({"policy_version": version})


class EvaluationSummaryView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("action_type", OpenApiTypes.STR),
            OpenApiParameter("since", MOMENT, description="ISO date or date-time (inclusive)"),
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
            figures.evaluation_summary(action_type=request.query_params.get("action_type") or None, since=since)
        )
