from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PipesConfig(AppConfig):
    name = "pipes"
    verbose_name = _("Processes")

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from . import portal_mail  # noqa: F401  connects requester emails to hooks.card_changed
        from .models import Card, Field, Label, Organization, Phase, Pipe

        for model in (Organization, Pipe, Phase, Field, Label):
            auditlog.register(model)
        # Card values are on the hash-chained timeline too; the audit log keeps who saved the row.
        auditlog.register(Card, exclude_fields=["last_event_hash", "event_count", "version"])
