"""Settings for the benchmarks' servers and workers: the project's settings plus the bench-only
baseline (bench/baseline: the bare DRF endpoint the ingest and decision benchmarks compare the
gate against), installed and mounted at /bench/baseline/.

    DJANGO_SETTINGS_MODULE=bench.settings

bench/gate_bench.py starts its stack (bench/stack.py) with these; production never loads them.
"""

from escalation_app.settings import *  # noqa: F403
from escalation_app.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.baseline"]
ROOT_URLCONF = "bench.urls"
