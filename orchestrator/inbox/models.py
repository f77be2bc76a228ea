"""What the inbox keeps beside the rail's review tasks: due times, sign-offs and delegations."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orchestrator.models import ReviewTask


class Decision(models.TextChoices):
    APPROVE = "approve", _("Approve")
    REJECT = "reject", _("Reject")
    REQUEST_CHANGES = "request_changes", _("Request changes")


class InboxItem(models.Model):
    """A review task as the inbox tracks it: when it is due, whether it escalated, how many approvals it needs."""

    task = models.OneToOneField(ReviewTask, on_delete=models.CASCADE, primary_key=True, related_name="inbox")
    sla_hours = models.PositiveIntegerField(_("review SLA (hours)"))
    due_at = models.DateTimeField(_("due"), db_index=True)
    approvals_required = models.PositiveSmallIntegerField(_("approvals required"), default=1)
    escalated_at = models.DateTimeField(_("escalated"), null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("inbox item")
        verbose_name_plural = _("inbox items")

    def __str__(self) -> str:
        return f"review task {self.task_id} due {self.due_at:%Y-%m-%d %H:%M}"

    @property
    def four_eyes(self) -> bool:
        return self.approvals_required > 1


class ReviewSignoff(models.Model):
    """One person's decision on a review task (the first approval of a four-eyes task, or a final decision)."""

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="signoffs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(_("decision"), max_length=40)
    comment = models.TextField(_("comment"), blank=True)
    values = models.JSONField(_("values set"), null=True, blank=True)
    edited_keys = models.JSONField(_("fields edited from the agent's draft"), default=list, blank=True)
    final = models.BooleanField(_("closed the task"), default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["task", "created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["task", "user"], name="uniq_signoff_per_person")]
        verbose_name = _("review sign-off")
        verbose_name_plural = _("review sign-offs")

    def __str__(self) -> str:
        return f"{self.user_id} {self.decision} on review task {self.task_id}"


class ReviewDelegation(models.Model):
    """A review task handed from one reviewer to another, by whom and why."""

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="delegations")
    from_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    to_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(_("note"), max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["task", "created_at", "id"]
        verbose_name = _("review delegation")
        verbose_name_plural = _("review delegations")

    def __str__(self) -> str:
        return f"review task {self.task_id} → {self.to_user_id}"
