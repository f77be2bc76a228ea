from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InboxConfig(AppConfig):
    name = "orchestrator.inbox"
    label = "inbox"
    verbose_name = _("Reviewer inbox")

    def ready(self) -> None:
        from . import receivers  # noqa: F401  opens an inbox item for every new review task
