"""The project's URLs plus the bench-only baseline at /bench/baseline/ (bench/settings.py)."""

from django.urls import URLPattern, URLResolver, include, path

from escalation_app import urls as project_urls

handler404 = project_urls.handler404

urlpatterns: list[URLPattern | URLResolver] = [
    *project_urls.urlpatterns,
    path("bench/baseline/", include("bench.baseline.urls")),
]
