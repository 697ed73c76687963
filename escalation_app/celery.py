import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

from approvals.ops import logging as gate_logging
from approvals.ops.health import HeartbeatStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "escalation_app.settings")

app = Celery("escalation_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Observability: a heartbeat from every worker (read by /readyz, /metrics and /ops/), and the
# action a task handles named on its log lines.
app.steps["worker"].add(HeartbeatStep)
task_prerun.connect(gate_logging.celery_task_started)
task_postrun.connect(gate_logging.celery_task_finished)
