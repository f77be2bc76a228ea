from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Rail"

    def ready(self) -> None:
        from . import dispatch  # noqa: F401  subscribes to pipes' phase-entry hook
