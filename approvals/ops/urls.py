"""Operations: probes, metrics and the admins' page. The probes and /metrics are answered by
approvals.ops.health.ProbeMiddleware before routing; they are routed here too, so that they have names."""

from django.urls import URLPattern, path

from approvals.ops import health, metrics, pages

urlpatterns: list[URLPattern] = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("ops/", pages.ops_page, name="ops"),
    path("ops/data", pages.ops_data, name="ops-data"),
]
