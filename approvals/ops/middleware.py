"""Request limits and clean failures that apply before and around every view."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


class BodySizeLimitMiddleware:
    """Refuse a body over GATE_MAX_BODY_BYTES with 413 before anything reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        if length > settings.GATE_MAX_BODY_BYTES:
            return JsonResponse(
                {"detail": f"Request body is larger than {settings.GATE_MAX_BODY_BYTES} bytes."}, status=413
            )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A database that cannot be reached is a 503 with a retry hint, not a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable: %s", exception)
            response = JsonResponse({"detail": "The database is unavailable; retry shortly."}, status=503)
            response["Retry-After"] = "5"
            return response
        return None


class QueryStringNulMiddleware:
    """A NUL character in the query string is refused with 400: PostgreSQL cannot compare text
    with one, so any filter it reached would fail as a server error."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.META.get("QUERY_STRING", "") or any(
            "\x00" in key or "\x00" in value for key, values in request.GET.lists() for value in values
        ):
            return JsonResponse({"detail": "The query string contains a NUL character (%00)."}, status=400)
        return self.get_response(request)
