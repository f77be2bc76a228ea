"""Choice sets of the process model."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class OrgRole(models.TextChoices):
    OWNER = "owner", _("Owner")
    MEMBER = "member", _("Member")


class PipeRole(models.TextChoices):
    ADMIN = "admin", _("Admin")
    MEMBER = "member", _("Member")
    REVIEWER = "reviewer", _("Reviewer")
    REQUESTER = "requester", _("Requester")
    VIEWER = "viewer", _("Viewer")


class FieldType(models.TextChoices):
    SHORT_TEXT = "short_text", _("Short text")
    LONG_TEXT = "long_text", _("Long text")
    NUMBER = "number", _("Number")
    CURRENCY = "currency", _("Currency")
    PERCENTAGE = "percentage", _("Percentage")
    DATE = "date", _("Date")
    DATETIME = "datetime", _("Date and time")
    DUE_DATE = "due_date", _("Due date")
    EMAIL = "email", _("Email")
    PHONE = "phone", _("Phone")
    SELECT = "select", _("Select")
    MULTI_SELECT = "multi_select", _("Multi-select")
    CHECKBOX = "checkbox", _("Checkbox")
    CHECKLIST = "checklist", _("Checklist")
    ATTACHMENT = "attachment", _("Attachment")
    ASSIGNEE = "assignee", _("Assignee")
    LABEL = "label", _("Label")
    CONNECTION = "connection", _("Connection")


class ActorKind(models.TextChoices):
    USER = "user", _("Person")
    AGENT = "agent", _("Agent")
    SYSTEM = "system", _("System")


class EventKind(models.TextChoices):
    CREATED = "created", _("Created")
    FIELDS_CHANGED = "fields_changed", _("Fields changed")
    MOVED = "moved", _("Moved")
    ASSIGNED = "assigned", _("Assignees changed")
    LABELED = "labeled", _("Labels changed")
    DUE_CHANGED = "due_changed", _("Due date changed")
    COMMENTED = "commented", _("Commented")
    FILE_ADDED = "file_added", _("File added")
    STEP = "step", _("Step run")
    ERASED = "erased", _("Personal data erased")
    LATE = "late", _("Late: over the phase's SLA")
    EXPIRED = "expired", _("Expired: over the pipe's deadline")


class RailStatus(models.TextChoices):
    """What the rail is doing with a card right now (shown as a badge on the board)."""

    IDLE = "idle", _("Idle")
    RUNNING = "running", _("Agent running")
    WAITING_REVIEW = "waiting_review", _("Waiting for review")
    FAILED = "failed", _("Step failed")


class MailStatus(models.TextChoices):
    """Where a message of the mail outbox (pipes.mailbox) is: sent at most once."""

    PENDING = "pending", _("Waiting to be sent")
    SENDING = "sending", _("Being sent")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Refused by the mail server")
    UNKNOWN = "unknown", _("May or may not have been sent")
