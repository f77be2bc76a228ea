"""What the card panel (pipes, which knows nothing of the rail) shows of a card's step runs: a link
from each step on the timeline to its run and trace, and a Retry beside the "Step failed" badge.

Registered with pipes.selectors.register_step_runs in OrchestratorConfig.ready.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.urls import reverse
from django.utils.translation import gettext as _

from pipes.models import Card
from pipes.roles import PipeAccess
from pipes.selectors import StepRuns, register_step_runs
from pipes.services import CardError, CardPermissionError

from ..models import RunStatus, StepRun
from .services import RailError, RailPermissionError, step_run_retry


def run_url(run_id: int) -> str:
    return reverse("rail:run", kwargs={"run_id": run_id})


def may_open(access: PipeAccess) -> bool:
    """Who may open a run page: the rule of orchestrator.rail.selectors.run_get_for_user."""
    return access.can_work or access.can_administer


def failed_run(card: Card) -> int | None:
    """The failed run the card waits on in its current phase (the newest, if several failed)."""
    return (
        StepRun.objects.filter(card=card, status=RunStatus.FAILED, entry__left_at__isnull=True)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )


def retry(*, card: Card, user: AbstractBaseUser) -> None:
    """Run the card's failed step again with the rail's own retry (its permission and state checks)."""
    run_id = failed_run(card)
    if run_id is None:
        raise CardError(_("No step of this card is waiting to be retried."))
    try:
        step_run_retry(run=StepRun(pk=run_id), user=user)
    except RailPermissionError as exc:
        raise CardPermissionError(exc.message) from exc
    except RailError as exc:
        raise CardError(exc.message) from exc


def register() -> None:
    register_step_runs(StepRuns(run_url=run_url, may_open=may_open, failed_run=failed_run, retry=retry))
