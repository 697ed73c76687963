"""Pages of the evaluation dashboard (/evaluation/)."""

from django.urls import URLPattern, path

from approvals.evaluation import pages

urlpatterns: list[URLPattern] = [
    path("", pages.evaluation_dashboard, name="evaluation-dashboard"),
    path("apply", pages.evaluation_apply, name="evaluation-apply"),
    path("whatif/", pages.whatif_new, name="evaluation-whatif"),
    path("whatif/<int:run_id>/", pages.whatif_detail, name="evaluation-whatif-detail"),
    path("whatif/<int:run_id>.json", pages.whatif_status, name="evaluation-whatif-status"),
]
