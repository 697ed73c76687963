"""Pages of the evaluation dashboard (/evaluation/)."""

from django.urls import URLPattern, path

from approvals import evaluation_pages

urlpatterns: list[URLPattern] = [
    path("", evaluation_pages.evaluation_dashboard, name="evaluation-dashboard"),
    path("apply", evaluation_pages.evaluation_apply, name="evaluation-apply"),
    path("whatif/", evaluation_pages.whatif_new, name="evaluation-whatif"),
    path("whatif/<int:run_id>/", evaluation_pages.whatif_detail, name="evaluation-whatif-detail"),
    path("whatif/<int:run_id>.json", evaluation_pages.whatif_status, name="evaluation-whatif-status"),
]
