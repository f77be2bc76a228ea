"""The rail's state: the steps of each phase, their runs with traces and costs, and review tasks."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from agents.models import Agent
from pipes.models import Card, Phase, PhaseEntry, Pipe


class Mechanism(models.TextChoices):
    AUTOMATION = "automation", _("Automation")
    LOCAL_MODEL = "local_model", _("Local model")
    FOUNDATION_MODEL = "foundation_model", _("Foundation model")
    HUMAN = "human", _("Human")
    AUTO = "auto", _("Auto (router)")


class Risk(models.TextChoices):
    LOW = "low", _("Low")
    MEDIUM = "medium", _("Medium")
    HIGH = "high", _("High")


class RunStatus(models.TextChoices):
    PENDING = "pending", _("Queued")
    RUNNING = "running", _("Running")
    WAITING_REVIEW = "waiting_review", _("Waiting for review")
    DONE = "done", _("Done")
    SKIPPED = "skipped", _("Skipped")
    FAILED = "failed", _("Failed")


class ReviewStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DECIDED = "decided", _("Decided")
    CANCELLED = "cancelled", _("Cancelled")


STAY = ""  # an empty "next phase" means the card stays and the next step runs


class Trigger(models.TextChoices):
    """When a step runs: on the card's entry into the phase, or when the card becomes overdue there."""

    ENTERED = "entered", _("When a card enters the phase")
    LATE = "late", _("When a card becomes late in the phase (over its SLA)")
    EXPIRED = "expired", _("When a card passes the pipe's deadline in the phase")


class Step(models.Model):
    """One step of a phase, run in order when a card enters the phase."""

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(_("position"), default=0)
    key = models.SlugField(_("key"), max_length=64)
    name = models.CharField(_("name"), max_length=120)
    mechanism = models.CharField(_("mechanism"), max_length=20, choices=Mechanism.choices)
    trigger = models.CharField(
        _("runs"),
        max_length=8,
        choices=Trigger.choices,
        default=Trigger.ENTERED,
        help_text=_(
            "Steps that run when a card becomes late or expired run once per stay in the phase, "
            "within a minute of the SLA mark (to escalate, notify or move it)."
        ),
    )
    condition = models.JSONField(
        _("run only when"),
        null=True,
        blank=True,
        help_text=_('e.g. {"field": "amount", "op": "gt", "value": 0}'),
    )
    rules = models.JSONField(
        _("rules"),
        default=list,
        blank=True,
        help_text=_(
            'Settle the case without a model: [{"when": {...}, "decision": "approve", "reason": "..."}]'
        ),
    )
    risk = models.CharField(_("risk"), max_length=8, choices=Risk.choices, default=Risk.LOW)
    agent = models.ForeignKey(
        Agent, on_delete=models.RESTRICT, null=True, blank=True, related_name="steps", verbose_name=_("agent")
    )
    actions = models.JSONField(_("actions"), default=list, blank=True)
    on_approve = models.CharField(_("on approve, move to"), max_length=64, blank=True)
    on_reject = models.CharField(_("on reject, move to"), max_length=64, blank=True)
    on_done = models.CharField(_("when done, move to"), max_length=64, blank=True)
    question = models.CharField(_("question for the reviewer"), max_length=300, blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("reviewer"),
        help_text=_("Empty: any reviewer of the pipe."),
    )
    four_eyes = models.BooleanField(
        _("four eyes"), default=False, help_text=_("Reserved: two reviewers decide.")
    )
    max_attempts = models.PositiveSmallIntegerField(_("attempts"), default=3)

    class Meta:
        ordering = ["phase", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["phase", "key"], name="uniq_step_key")]
        verbose_name = _("step")
        verbose_name_plural = _("steps")

    def __str__(self) -> str:
        return f"{self.phase.key}.{self.key}"

    def next_phase_key(self, decision: str) -> str:
        """The phase key a decision leads to ("" = stay)."""
        if decision == "approve":
            return self.on_approve
        if decision == "reject":
            return self.on_reject
        return self.on_done


class PipeRailSettings(models.Model):
    """Per-pipe settings of the rail: the monthly token budget for foundation models."""

    pipe = models.OneToOneField(Pipe, on_delete=models.CASCADE, related_name="rail_settings")
    monthly_token_budget = models.PositiveBigIntegerField(
        _("monthly foundation-model token budget"),
        null=True,
        blank=True,
        help_text=_("Input plus output tokens per calendar month; empty means no limit."),
    )

    class Meta:
        verbose_name = _("pipe rail settings")
        verbose_name_plural = _("pipe rail settings")

    def __str__(self) -> str:
        return str(self.pipe)


class StepRun(models.Model):
    """One step run for one phase entry (at most one per entry and step): who ran it, why, and what it cost."""

    entry = models.ForeignKey(PhaseEntry, on_delete=models.CASCADE, related_name="step_runs")
    step = models.ForeignKey(Step, on_delete=models.SET_NULL, null=True, related_name="runs")
    card = models.ForeignKey(Card, on_delete=models.CASCADE, related_name="step_runs")
    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="step_runs")
    step_name = models.CharField(max_length=120)
    requested_mechanism = models.CharField(max_length=20, choices=Mechanism.choices)
    mechanism = models.CharField(max_length=20, choices=Mechanism.choices, blank=True)
    routing_reason = models.CharField(max_length=500, blank=True)
    reason_data = models.JSONField(
        null=True,
        blank=True,
        help_text="The reason as codes and parameters (orchestrator.rail.reasons); empty on older runs.",
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    decision = models.CharField(max_length=40, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.CharField(max_length=40, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    provider = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=120, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    foundation_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    baseline_cost = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        default=Decimal("0"),
        help_text=_("What this step would have cost on the foundation model alone."),
    )
    currency = models.CharField(max_length=3, blank=True)
    error = models.TextField(blank=True)
    trace_pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="When the pipe's trace retention deleted prompts and raw outputs."
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["entry", "step"], name="uniq_run_per_entry_step")]
        indexes = [models.Index(fields=["pipe", "created_at"], name="run_pipe_time_idx")]
        verbose_name = _("step run")
        verbose_name_plural = _("step runs")

    def __str__(self) -> str:
        return f"{self.step_name} on card {self.card_id} ({self.status})"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class TraceKind(models.TextChoices):
    ROUTING = "routing", _("Routing")
    INPUTS = "inputs", _("Inputs seen")
    FILES = "files", _("Files consumed")
    PROMPT = "prompt", _("Prompt")
    RAW_OUTPUT = "raw_output", _("Raw output")
    VALIDATION = "validation", _("Validation errors")
    MODEL_ERROR = "model_error", _("Model error")
    HTTP_CALL = "http_call", _("HTTP call")
    TOOL_CALL = "tool_call", _("Action")
    CHANGES = "changes", _("Changes applied")
    REVIEW = "review", _("Review")
    ERROR = "error", _("Error")
    RETRY = "retry", _("Retry")


class TraceEvent(models.Model):
    """One thing that happened inside a step run, in order."""

    run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    attempt = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=TraceKind.choices)
    summary = models.CharField(max_length=500, blank=True)
    data = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="uniq_trace_seq")]
        verbose_name = _("trace event")
        verbose_name_plural = _("trace events")

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.kind}"


class ReviewTask(models.Model):
    """A decision a person owes a card: the question, what the agent proposed, and the answer."""

    run = models.OneToOneField(StepRun, on_delete=models.CASCADE, related_name="review")
    card = models.ForeignKey(Card, on_delete=models.CASCADE, related_name="review_tasks")
    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="review_tasks")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="review_tasks",
    )
    question = models.CharField(max_length=300)
    proposal = models.JSONField(
        null=True, blank=True, help_text=_("The agent's decision and values, if any.")
    )
    reasoning = models.TextField(blank=True)
    confidence = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    allowed_decisions = models.JSONField(default=list)
    reason = models.CharField(max_length=500, blank=True, help_text=_("Why a person decides this case."))
    status = models.CharField(max_length=12, choices=ReviewStatus.choices, default=ReviewStatus.OPEN)
    decision = models.CharField(max_length=40, blank=True)
    comment = models.TextField(blank=True)
    values = models.JSONField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    opened_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["pipe", "status"], name="review_pipe_status_idx")]
        verbose_name = _("review task")
        verbose_name_plural = _("review tasks")

    def __str__(self) -> str:
        return f"{self.question} ({self.status})"


# ---------------------------------------------------------------- the REST API (orchestrator.api)


class ApiTokenKind(models.TextChoices):
    PERSONAL = "personal", _("Personal")
    SERVICE = "service", _("Service")


class ApiTokenScope(models.TextChoices):
    READ = "read", _("Read")
    WRITE = "write", _("Read and write")


class ApiToken(models.Model):
    """A secret that lets a program use the API as its owner, limited to some pipes and to reading or writing.

    Only a SHA-256 digest of the secret is kept; the secret itself is shown once, when it is made."""

    organization = models.ForeignKey(
        "pipes.Organization", on_delete=models.CASCADE, related_name="api_tokens"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(
        _("kind"), max_length=12, choices=ApiTokenKind.choices, default=ApiTokenKind.PERSONAL
    )
    scope = models.CharField(
        _("scope"), max_length=8, choices=ApiTokenScope.choices, default=ApiTokenScope.READ
    )
    pipes = models.ManyToManyField(Pipe, related_name="api_tokens", verbose_name=_("pipes"))
    prefix = models.CharField(max_length=16)  # the secret's first characters, to tell tokens apart
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    """The first answer to a POST sent with an Idempotency-Key, replayed to repeats of that key by the same caller."""

    actor_key = models.CharField(max_length=40)  # "token:12" or "user:7"
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # SHA-256 of the method, path and body
    status_code = models.PositiveSmallIntegerField(default=0)
    body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["actor_key", "key"], name="uniq_idempotency_key")]
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")

    def __str__(self) -> str:
        return f"{self.actor_key} {self.key}"


# ---------------------------------------------------------------- webhooks (orchestrator.webhooks)


def _webhook_key() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _webhook_secret() -> str:
    import secrets

    return "whsec_" + secrets.token_urlsafe(32)


class InboundAuth(models.TextChoices):
    SIGNATURE = "signature", _("HMAC-SHA256 signature of the body, with a timestamp")
    TOKEN = "token", _("The secret as a bearer token")


class InboundWebhook(models.Model):
    """A URL another system posts JSON to: it opens a card in the pipe, or updates and moves the card
    it opened before (found by the external id in the body)."""

    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="inbound_webhooks")
    name = models.CharField(_("name"), max_length=120)
    key = models.CharField(_("URL key"), max_length=40, unique=True, default=_webhook_key, editable=False)
    auth = models.CharField(
        _("authentication"), max_length=12, choices=InboundAuth.choices, default=InboundAuth.SIGNATURE
    )
    secret = models.CharField(
        _("secret"),
        max_length=128,
        default=_webhook_secret,
        editable=False,  # shown in the admin, never in the design audit trail
        help_text=_("Shared with the sending system: the key of its signature, or its bearer token."),
    )
    mapping = models.JSONField(
        _("field mapping"),
        default=dict,
        blank=True,
        help_text=_(
            'JSON path in the body → field key, e.g. {"$.order.total": "amount", "$.buyer.email": "email"}'
        ),
    )
    external_id_path = models.CharField(
        _("external id at"),
        max_length=200,
        blank=True,
        help_text=_(
            "JSON path of the other system's id, e.g. $.order.id: a second post with it updates that card."
        ),
    )
    phase_path = models.CharField(
        _("phase key at"),
        max_length=200,
        blank=True,
        help_text=_("JSON path of the phase key to move the card to, e.g. $.status (optional)."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pipe", "name", "id"]
        verbose_name = _("inbound webhook")
        verbose_name_plural = _("inbound webhooks")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .webhooks.paths import mapping_problems, path_problem

        errors: dict[str, list[str]] = {}
        if self.pipe_id is not None:
            problems = mapping_problems(self.mapping, pipe=self.pipe)
            if problems:
                errors["mapping"] = problems
        for name in ("external_id_path", "phase_path"):
            value = getattr(self, name)
            problem = path_problem(value) if value else None
            if problem:
                errors[name] = [problem]
        if errors:
            raise ValidationError(errors)


class WebhookEvent(models.TextChoices):
    CARD_CREATED = "card.created", _("Card created")
    CARD_MOVED = "card.moved", _("Card moved")
    CARD_FIELDS_UPDATED = "card.fields_updated", _("Fields updated")
    CARD_LATE = "card.late", _("Card late (over the phase's SLA)")
    CARD_EXPIRED = "card.expired", _("Card expired (over the pipe's deadline)")
    CARD_FINISHED = "card.finished", _("Card finished")
    REVIEW_DECIDED = "review.decided", _("Review decided")
    STEP_FAILED = "step.failed", _("Step failed")


class OutboundWebhook(models.Model):
    """Where a pipe's events are sent: a URL on an allowed host, signed with a secret, with retries."""

    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="outbound_webhooks")
    name = models.CharField(_("name"), max_length=120)
    url = models.URLField(
        _("URL"), max_length=500, help_text=_("Its host must be one of the organization's allowed hosts.")
    )
    secret = models.CharField(
        _("signing secret"),
        max_length=128,
        default=_webhook_secret,
        editable=False,  # shown in the admin, never in the design audit trail
        help_text=_("The receiver checks the Trilho-Webhook-Signature header with it."),
    )
    events = models.JSONField(
        _("events"),
        default=list,
        blank=True,
        help_text=_('Which events to send, e.g. ["card.created", "card.moved"]; empty: all of them.'),
    )
    is_active = models.BooleanField(_("active"), default=True)
    failure_count = models.PositiveIntegerField(default=0)  # failed attempts in a row, across deliveries
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pipe", "name", "id"]
        verbose_name = _("outbound webhook")
        verbose_name_plural = _("outbound webhooks")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        events = self.events
        if not isinstance(events, list) or any(e not in WebhookEvent.values for e in events):
            raise ValidationError(
                {"events": _("A list of: %(names)s.") % {"names": ", ".join(WebhookEvent.values)}}
            )

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class WebhookDelivery(models.Model):
    """One event for one outbound webhook: the outbox row, written in the transaction of the fact, and
    the log of its attempts."""

    webhook = models.ForeignKey(OutboundWebhook, on_delete=models.CASCADE, related_name="deliveries")
    card = models.ForeignKey(Card, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    event_id = models.UUIDField()
    event = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)  # an attempt is under way until then
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    log = models.JSONField(default=list, blank=True)  # each attempt: at, status, error, ms (newest last)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["webhook", "event_id"], name="uniq_delivery_event"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
            models.Index(fields=["webhook", "created_at"], name="delivery_hook_time_idx"),
        ]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")

    def __str__(self) -> str:
        return f"{self.event} {self.event_id} ({self.status})"


class OutboxStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    SENDING = "sending", _("Being sent")
    SENT = "sent", _("Sent")
    UNKNOWN = "unknown", _("Unknown (a worker stopped while sending)")
    FAILED = "failed", _("Not sent")


class EmailOutbox(models.Model):
    """One email of a step run, written with the run's result and sent after commit at most once."""

    # run-<run id>-a<attempt>-<action index>: the same step's apply cannot write a message twice
    key = models.CharField(max_length=100, unique=True)
    run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="emails")
    attempt = models.PositiveSmallIntegerField()
    action_index = models.PositiveSmallIntegerField()
    to = models.JSONField(default=list)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=8, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sending_at = models.DateTimeField(null=True, blank=True)
    sending_by = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"], name="outbox_status_created")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class RailHeartbeat(models.Model):
    """The last time a periodic job (beat's tick) ran, by name: the health page reads it."""

    name = models.CharField(max_length=50, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"
