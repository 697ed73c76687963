from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Autonomy Gate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (web and worker processes alike).
        from approvals.ops import tracing

        tracing.configure()
