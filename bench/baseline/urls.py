from django.urls import path

from bench.baseline.views import BareCreateView

urlpatterns = [path("actions", BareCreateView.as_view(), name="bench-baseline-actions")]
