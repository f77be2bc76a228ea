from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = _("Rail")

    def ready(self) -> None:
        from . import definitions, dispatch  # noqa: F401  dispatch subscribes to pipes' phase-entry hook

        definitions.register()
