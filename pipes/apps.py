from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PipesConfig(AppConfig):
    name = "pipes"
    verbose_name = _("Processes")

    def ready(self) -> None:
        from auditlog.registry import auditlog
        from django.contrib.auth import get_user_model
        from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
        from guardian.models import GroupObjectPermission, UserObjectPermission

        from .governance import audit
        from .models import Card, Field, Label, Membership, Organization, Phase, Pipe
        from .portal import mail  # noqa: F401  connects requester emails to hooks
        from .roles import forget_access

        for model in (Organization, Pipe, Phase, Field, Label):
            auditlog.register(model)
        # Card values are on the hash-chained timeline too; the audit log keeps who saved the row
        # (card_move leaves it out: a move is all on the timeline).
        auditlog.register(Card, exclude_fields=["last_event_hash", "event_count", "version"])

        # Who may do what is part of the design trail: grants and memberships, however they were made.
        for model in (UserObjectPermission, GroupObjectPermission):
            for signal in (post_save, post_delete):
                signal.connect(
                    audit.log_pipe_permission,
                    sender=model,
                    dispatch_uid=f"pipes.audit.{model.__name__}.{signal}",
                )
        pre_save.connect(
            audit.remember_membership_role, sender=Membership, dispatch_uid="pipes.audit.membership.pre"
        )
        for signal in (post_save, post_delete):
            signal.connect(
                audit.log_membership, sender=Membership, dispatch_uid=f"pipes.audit.membership.{signal}"
            )

        # A request remembers each pipe_access answer (roles.access_cache); a write that can change
        # one makes it forget them all.
        User = get_user_model()
        for model in (UserObjectPermission, GroupObjectPermission, Membership, User):
            post_save.connect(
                forget_access, sender=model, dispatch_uid=f"pipes.forget_access.save.{model.__name__}"
            )
            post_delete.connect(
                forget_access, sender=model, dispatch_uid=f"pipes.forget_access.delete.{model.__name__}"
            )
        m2m_changed.connect(
            forget_access, sender=User.groups.through, dispatch_uid="pipes.forget_access.groups"
        )
        _psycopg_conversion_cache()


# psycopg converts a statement's %s placeholders to PostgreSQL's $n anew on every execution unless it
# has at most MAX_CACHED_STATEMENT_PARAMS (50) values; then it reuses the conversion. The write path's
# one-statement writes (a rail step's field change and record: two events, the card's row and the audit
# entry, 51 values; a move's event, card, entries and audit entry) are over that, and their conversion
# cost a rail step 0.25 ms of its 5.6 ms of worker CPU (bench/profile_rail.py). Their text is the same
# from one write to the next, so the cache serves them; a statement with a variable list of values
# (`IN (...)` of hundreds) still bypasses it.
PSYCOPG_CACHED_STATEMENT_PARAMS = 200


def _psycopg_conversion_cache() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    from psycopg import _queries

    _queries.MAX_CACHED_STATEMENT_PARAMS = max(
        getattr(_queries, "MAX_CACHED_STATEMENT_PARAMS", 0), PSYCOPG_CACHED_STATEMENT_PARAMS
    )
