"""Pages of the evaluation dashboard (/evaluation/)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
