from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = _("Rail")

    def ready(self) -> None:
        # dispatch subscribes to pipes' hooks; privacy to erasure and registers the trace pruner; tasks
        # registers the rail's Celery tasks under the names dispatch sends them by
        from .api import receivers as _api_receivers  # noqa: F401 - erasure reaches kept API answers
        from .rail import definitions, dispatch, privacy, tasks  # noqa: F401
        from .webhooks import receivers as _webhook_receivers  # noqa: F401

        definitions.register()
        from pipes.selectors import register_step_reason_display

        from .rail.timeline import step_event_display

        register_step_reason_display(step_event_display)
        from .rail import card_runs

        card_runs.register()  # the card panel's links to runs and its Retry of a failed step

        from pipes.design import register_design_model

        from .models import PipeRailSettings, Step

        # Steps and the rail's settings are design objects: one design service changes them.
        register_design_model(Step, pipe_path="phase__pipe")
        register_design_model(PipeRailSettings, pipe_path="pipe")
        from .models import InboundWebhook, OutboundWebhook

        register_design_model(InboundWebhook, pipe_path="pipe")  # webhooks are design objects too
        register_design_model(OutboundWebhook, pipe_path="pipe")
