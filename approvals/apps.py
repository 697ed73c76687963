from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Autonomy Gate"
    default_auto_field = "django.db.models.BigAutoField"
