from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = _("Agents")

    def ready(self) -> None:
        from pipes.design import register_design_model

        from .models import Agent, AllowedHost

        # Agents and allowed hosts change only through the design service, like the pipe itself.
        register_design_model(Agent, pipe_path="pipe")
        register_design_model(AllowedHost, org_path="organization")
