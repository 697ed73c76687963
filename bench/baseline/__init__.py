"""Bench-only: the bare DRF endpoint the ingest and decision benchmarks compare the gate against.

Installed and mounted (at /bench/baseline/) only by the bench settings (bench/settings.py and
bench/urls.py: DJANGO_SETTINGS_MODULE=bench.settings); never in production.
"""
