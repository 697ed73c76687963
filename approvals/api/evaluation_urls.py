"""The evaluation API beyond the contract's summary: figures, sweeps, rule health, exports, what-if."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
