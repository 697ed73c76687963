from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException, UnsupportedMediaType
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from approvals.errors import ActionConflict, IdempotencyConflict, InvalidParams, NotReviewerOf, ServiceError


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The action is not in a state that allows this."
    default_code = "conflict"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the gate's own errors, always as a JSON body."""
    if isinstance(exc, (ActionConflict, IdempotencyConflict)):
        return Response({"detail": exc.message}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, NotReviewerOf):
        return Response({"detail": exc.message}, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, InvalidParams):
        return Response({"detail": exc.message, "params": exc.problems}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ServiceError):
        return Response({"detail": exc.message}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "Request body is too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, UnsupportedMediaType):
        # Contract §2: a body that is not JSON is a malformed request (400), whatever its type says.
        return Response(
            {"detail": f"{exc.detail} The body must be JSON (Content-Type: application/json)."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, Http404):
        return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return drf_exception_handler(exc, context)
