import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

from approvals import logging as gate_logging
from approvals.health import HeartbeatStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")

app = Celery("escalation_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The tasks modules: every installed app's (approvals, and bench.baseline when the benchmarks install
# it), then those of approvals' rooms, packages inside the app that are not apps of their own.
app.autodiscover_tasks()
app.autodiscover_tasks(["approvals.evaluation"])

# Observability: a heartbeat from every worker (read by /readyz, /metrics and /ops/), and the
# action a task handles named on its log lines.
app.steps["worker"].add(HeartbeatStep)
task_prerun.connect(gate_logging.celery_task_started)
task_postrun.connect(gate_logging.celery_task_finished)
