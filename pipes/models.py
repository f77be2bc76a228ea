"""The process model: organizations, pipes, phases, fields, cards and their timeline.

Models hold state only. Every change to a card goes through pipes.services.
"""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .choices import ActorKind, EventKind, FieldType, MailStatus, OrgRole, RailStatus

TIME_ZONE_CHOICES = [(tz, tz) for tz in sorted(zoneinfo.available_timezones())]


class Organization(models.Model):
    """A tenant: a company whose people, pipes and cards live together."""

    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), unique=True)
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="America/Sao_Paulo", choices=TIME_ZONE_CHOICES
    )
    currency = models.CharField(_("currency"), max_length=3, default="BRL")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = _("organization")
        verbose_name_plural = _("organizations")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A person's place in an organization (owners administer every pipe of it)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=16, choices=OrgRole.choices, default=OrgRole.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="uniq_membership")]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"


class Pipe(models.Model):
    """A process: a start form, ordered phases and the cards that travel through them."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="pipes")
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"))
    code = models.CharField(
        _("code"), max_length=8, help_text=_("Short prefix of card references, e.g. AP for AP-1042.")
    )
    description = models.TextField(_("description"), blank=True)
    title_field = models.CharField(
        _("title field"),
        max_length=64,
        blank=True,
        help_text=_("Key of the start-form field that names each card."),
    )
    key_fields = models.JSONField(
        _("key fields"),
        default=list,
        blank=True,
        help_text=_("Keys of up to three fields shown on board cards."),
    )
    expiration_days = models.PositiveIntegerField(
        _("expiration (days)"),
        null=True,
        blank=True,
        help_text=_("A card is expired this many days after creation."),
    )
    portal_group = models.CharField(
        _("portal group"),
        max_length=80,
        blank=True,
        help_text=_("Heading under which the portal lists this form."),
    )
    public_form = models.BooleanField(
        _("public start form"),
        default=False,
        help_text=_("People without an account may submit the start form."),
    )
    # The number the pipe's last card got: card_create takes the next one under this row's lock,
    # so each pipe counts its cards from 1 (AP-1, AP-2...) whatever other pipes do.
    last_card_number = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    # A pipe that has cards is archived instead of deleted (pipes.design.design_archive): its cards
    # and their timelines stay, readable and verifiable, but it takes no new work.
    archived_at = models.DateTimeField(_("archived"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["organization__name", "name"]
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="uniq_pipe_slug")]
        permissions = [
            ("administer_pipe", "Can design the pipe and manage its members"),
            ("work_pipe", "Can see and work all cards of the pipe"),
            ("review_pipe", "Can decide reviews of the pipe"),
            ("request_pipe", "Can file requests through the start form"),
            ("view_pii", "Can see values of PII fields"),
        ]
        verbose_name = _("pipe")
        verbose_name_plural = _("pipes")

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class DesignStamp(models.Model):
    """A value that changes whenever a pipe's phases, fields or transitions change (or its steps, for the rail).

    Written only by database triggers (migration 0009 and the rail's), never by Django, so no stale
    object saved later can put an old value back, and no write, however it is made (the design
    service, a bulk insert, a data migration, a test), can change the design without changing it.
    Readers key a process-wide cache of the design on (pipe, stamp): pipes.designcache."""

    pipe = models.OneToOneField(Pipe, on_delete=models.CASCADE, primary_key=True, related_name="+")
    version = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("design stamp")
        verbose_name_plural = _("design stamps")

    def __str__(self) -> str:
        return f"{self.pipe_id}@{self.version}"


class Phase(models.Model):
    """A column of the pipe; cards in a final phase are finished."""

    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="phases")
    name = models.CharField(_("name"), max_length=120)
    key = models.SlugField(_("key"), max_length=64)
    position = models.PositiveIntegerField(_("position"), default=0)
    description = models.TextField(_("description"), blank=True)
    is_final = models.BooleanField(_("final phase"), default=False)
    allowed_next = models.ManyToManyField(
        "self",
        symmetrical=False,
        blank=True,
        related_name="+",
        verbose_name=_("may move to"),
        help_text=_("Empty means a card may move to any phase."),
    )
    sla_hours = models.PositiveIntegerField(_("SLA (hours)"), null=True, blank=True)
    wip_limit = models.PositiveIntegerField(_("WIP limit"), null=True, blank=True)
    wip_blocks = models.BooleanField(_("WIP limit blocks moves in"), default=False)
    requester_status = models.CharField(
        _("status shown to requesters"), max_length=80, blank=True, help_text=_("e.g. In review")
    )

    class Meta:
        ordering = ["pipe", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["pipe", "key"], name="uniq_phase_key")]
        verbose_name = _("phase")
        verbose_name_plural = _("phases")

    def __str__(self) -> str:
        return self.name


class PhaseTally(models.Model):
    """How many cards a phase holds, kept by database triggers on PostgreSQL (migration 0013): a card
    inserted, deleted, or moved to another phase changes its phases' rows in the same transaction,
    however the write is made. The board's column totals read it instead of counting the phase's cards,
    which at 100,000 cards in a pipe was most of a move's database time. SQLite counts the cards.

    The triggers lock a card's phases' rows in phase order (no two moves in opposite directions wait
    on each other), for the rest of the writing transaction: a transaction that adds or moves many
    cards holds its phases' rows until it commits."""

    phase = models.OneToOneField(Phase, on_delete=models.CASCADE, primary_key=True, related_name="+")
    cards = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("phase tally")
        verbose_name_plural = _("phase tallies")

    def __str__(self) -> str:
        return f"{self.phase_id}: {self.cards}"


class Field(models.Model):
    """A typed question on the start form (phase is empty) or on a phase."""

    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="fields")
    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, null=True, blank=True, related_name="fields")
    key = models.SlugField(_("key"), max_length=64)
    label = models.CharField(_("label"), max_length=200)
    type = models.CharField(_("type"), max_length=24, choices=FieldType.choices)
    help_text = models.CharField(_("help text"), max_length=300, blank=True)
    required = models.BooleanField(_("required"), default=False)
    position = models.PositiveIntegerField(_("position"), default=0)
    options = models.JSONField(
        _("options"), default=list, blank=True, help_text=_("Choices of select fields.")
    )
    validation = models.JSONField(
        _("validation"),
        default=dict,
        blank=True,
        help_text=_('e.g. {"min": 0, "max": 100} or {"regex": "^[0-9]+$"}'),
    )
    config = models.JSONField(
        _("settings"),
        default=dict,
        blank=True,
        help_text=_('Type settings, e.g. {"multiple": true, "pipe": "suppliers"}'),
    )
    condition = models.JSONField(
        _("condition"),
        null=True,
        blank=True,
        help_text=_('Show and require only when, e.g. {"field": "amount", "op": "gt", "value": 1000}'),
    )
    pii = models.BooleanField(_("personal data (PII)"), default=False)
    visible_to_requester = models.BooleanField(_("visible to requester"), default=True)
    requester_editable = models.BooleanField(
        _("requester fills it"),
        default=False,
        help_text=_("Asked of the requester while the card is in this phase."),
    )

    class Meta:
        ordering = ["pipe", "phase__position", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["pipe", "key"], name="uniq_field_key")]
        verbose_name = _("field")
        verbose_name_plural = _("fields")

    def __str__(self) -> str:
        return self.label

    @property
    def on_start_form(self) -> bool:
        return self.phase_id is None


class Label(models.Model):
    """A colored tag a card may carry."""

    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(_("name"), max_length=60)
    color = models.CharField(_("color"), max_length=16, default="#64748b")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["pipe", "name"], name="uniq_label_name")]
        verbose_name = _("label")
        verbose_name_plural = _("labels")

    def __str__(self) -> str:
        return self.name


class Card(models.Model):
    """A case travelling through a pipe; its field values live in `values` keyed by field key."""

    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="cards")
    # The card's number in its pipe (its reference is the pipe's code and this number); URLs keep
    # the primary key. Empty only for rows made without the write path (bulk loads in benchmarks).
    number = models.PositiveIntegerField(_("number"), null=True, blank=True, editable=False)
    phase = models.ForeignKey(Phase, on_delete=models.PROTECT, related_name="cards")
    title = models.CharField(_("title"), max_length=255)
    values = models.JSONField(_("values"), default=dict, blank=True)
    assignees = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="assigned_cards")
    labels = models.ManyToManyField(Label, blank=True, related_name="cards")
    due_at = models.DateTimeField(_("due"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="created_cards",
    )
    requester_email = models.EmailField(_("requester email"), blank=True)
    tracking_token = models.CharField(max_length=64, blank=True, db_index=True)
    # The form submission that filed the card (a portal form's staging token): a second post of the
    # same form finds this card instead of filing another (unique per pipe, see Meta.constraints).
    submission_key = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    phase_entered_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    requested_fields = models.JSONField(
        _("fields asked of the requester"),
        default=list,
        blank=True,
        help_text=_("Keys a reviewer asked the requester to correct; cleared when the card moves on."),
    )
    rail_status = models.CharField(
        _("rail status"), max_length=16, choices=RailStatus.choices, default=RailStatus.IDLE
    )
    rail_note = models.CharField(_("rail note"), max_length=300, blank=True)
    late_at = models.DateTimeField(_("late since"), null=True, blank=True)
    expired_at = models.DateTimeField(_("expired since"), null=True, blank=True)
    last_event_hash = models.CharField(max_length=64, blank=True)
    event_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["pipe", "phase", "-created_at"], name="card_board_idx"),
            models.Index(fields=["pipe", "updated_at"], name="card_changed_idx"),
            # The columns' counts (all, late) read from the index alone, whatever the pipe's size.
            models.Index(fields=["pipe", "phase", "phase_entered_at", "finished_at"], name="card_count_idx"),
            # The SLA report's cards finished in a month, read from the index alone (trailing key
            # columns rather than INCLUDE, which SQLite ignores with a system-check warning).
            models.Index(fields=["pipe", "finished_at", "created_at", "id"], name="card_finished_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["pipe", "submission_key"],
                condition=~models.Q(submission_key=""),
                name="uniq_card_submission",
            ),
            models.UniqueConstraint(fields=["pipe", "number"], name="uniq_card_number"),
        ]
        verbose_name = _("card")
        verbose_name_plural = _("cards")

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"

    @property
    def reference(self) -> str:
        return card_reference(self.pipe.code, self.number, self.pk)

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None


def card_reference(code: str, number: int | None, pk: int | None) -> str:
    """How people name a card: its pipe's code and its number in the pipe (AP-12)."""
    return f"{code}-{number if number is not None else pk}"


def card_file_path(instance: CardFile, filename: str) -> str:
    return f"cards/{instance.card.pipe_id}/{instance.card_id}/{instance.sha256[:16]}/{filename}"


class CardFile(models.Model):
    """A file attached to a card, optionally as the value of an attachment field."""

    card = models.ForeignKey(Card, on_delete=models.CASCADE, related_name="files")
    field_key = models.CharField(max_length=64, blank=True)
    file = models.FileField(upload_to=card_file_path, max_length=400)
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=120)
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["uploaded_at", "id"]
        verbose_name = _("card file")
        verbose_name_plural = _("card files")

    def __str__(self) -> str:
        return self.name


class CardEvent(models.Model):
    """One append-only entry of a card's timeline, hash-chained to the previous one."""

    card = models.ForeignKey(Card, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=24, choices=EventKind.choices)
    actor_kind = models.CharField(max_length=8, choices=ActorKind.choices)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=150)
    reason = models.CharField(max_length=500, blank=True)
    field_keys = models.JSONField(default=list, blank=True)
    payload = models.JSONField(null=True, blank=True)
    payload_salt = models.CharField(max_length=64, blank=True)
    payload_digest = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["card", "seq"]
        constraints = [models.UniqueConstraint(fields=["card", "seq"], name="uniq_event_seq")]
        verbose_name = _("card event")
        verbose_name_plural = _("card events")

    def __str__(self) -> str:
        return f"{self.card_id}#{self.seq} {self.kind}"


class PhaseEntry(models.Model):
    """A card entering a phase: the outbox row the rail dispatches its steps from."""

    card = models.ForeignKey(Card, on_delete=models.CASCADE, related_name="phase_entries")
    # Empty once its phase is deleted: the stay, and the step runs (with their costs) hanging from it,
    # are the card's history and stay (pipes.design.services.design_delete closes it first).
    phase = models.ForeignKey(Phase, on_delete=models.SET_NULL, null=True, related_name="entries")
    entered_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_count = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["entered_at", "id"]
        indexes = [
            models.Index(fields=["processed_at", "entered_at"], name="entry_pending_idx"),
            # The SLA report: a phase's stays that ended in a month, or are still open (left_at
            # NULL), read from the index alone (trailing key columns, as card_finished_idx).
            models.Index(fields=["phase", "left_at", "entered_at", "card"], name="entry_phase_left_idx"),
        ]
        verbose_name = _("phase entry")
        verbose_name_plural = _("phase entries")

    def __str__(self) -> str:
        return f"{self.card_id} → {self.phase}"


class Notification(models.Model):
    """An in-app message to a person (mentions, reviews, status changes)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    card = models.ForeignKey(Card, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    message = models.CharField(max_length=500)
    url = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")

    def __str__(self) -> str:
        return self.message


class Mail(models.Model):
    """An email to a person (a requester, a reviewer, a member), written in the transaction of the
    change it tells of and sent after it commits, by a worker, at most once (pipes.mailbox)."""

    # Whose message it is: the organization's erasures reach it, its health page counts it.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    to = models.JSONField(default=list)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=8, choices=MailStatus.choices, default=MailStatus.PENDING)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="mail_status_created")]
        verbose_name = _("email")
        verbose_name_plural = _("emails")

    def __str__(self) -> str:
        return f"{self.subject} ({self.status})"


# ---------------------------------------------------------------- governance (pipes.governance)


class PipePolicy(models.Model):
    """Governance settings of one pipe: how long finished cards and step traces are kept."""

    pipe = models.OneToOneField(Pipe, on_delete=models.CASCADE, related_name="policy")
    retention_days = models.PositiveIntegerField(
        _("anonymise finished cards after (days)"),
        null=True,
        blank=True,
        help_text=_("Empty keeps finished cards as they are."),
    )
    trace_retention_days = models.PositiveIntegerField(
        _("prune step traces after (days)"),
        null=True,
        blank=True,
        help_text=_("Prompts and raw model outputs are deleted; cost and decision rows stay."),
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("pipe policy")
        verbose_name_plural = _("pipe policies")

    def __str__(self) -> str:
        return f"{self.pipe} policy"


class PrivacyRequest(models.Model):
    """A data-subject export or erasure, or a retention run; the person is kept only as a keyed digest."""

    class Kind(models.TextChoices):
        EXPORT = "export", _("Export")
        ERASURE = "erasure", _("Erasure")
        RETENTION = "retention", _("Retention")

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="privacy_requests")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    subject_digest = models.CharField(max_length=64, blank=True, db_index=True)
    field_key = models.CharField(_("searched field"), max_length=64, blank=True)
    pipe_ids = models.JSONField(default=list, blank=True)
    card_ids = models.JSONField(default=list, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(_("note"), max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("privacy request")
        verbose_name_plural = _("privacy requests")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class CardErasure(models.Model):
    """A card whose personal data an erasure or a retention run removed."""

    card = models.ForeignKey(Card, on_delete=models.CASCADE, related_name="erasures")
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="erasures")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["card", "request"], name="uniq_card_erasure")]
        verbose_name = _("card erasure")
        verbose_name_plural = _("card erasures")

    def __str__(self) -> str:
        return f"{self.card_id} erased by #{self.request_id}"
