"""Specialists and the outside world they may reach: agents with a scope, and allowed hosts; and the
text extracted from card attachments for them (DocumentText).

An agent belongs to one pipe. Its scope (fields it reads and writes, phases it may move a
card to, decisions it may take, an authority limit) is enforced twice: by agents.output when
its answer is validated, and by pipes.services when the answer is applied as the agent actor.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from pipes.models import Organization, Pipe


class Provider(models.TextChoices):
    OLLAMA = "ollama", _("Ollama (local model)")
    OPENAI = "openai", _("OpenAI-compatible endpoint")
    ANTHROPIC = "anthropic", _("Anthropic")


LOCAL_PROVIDERS = {Provider.OLLAMA}
FOUNDATION_PROVIDERS = {Provider.OPENAI, Provider.ANTHROPIC}


class Agent(models.Model):
    """A specialist of one pipe: instructions, a model, and the scope it acts within."""

    pipe = models.ForeignKey(Pipe, on_delete=models.CASCADE, related_name="agents")
    key = models.SlugField(_("key"), max_length=64)
    name = models.CharField(_("name"), max_length=120)
    instructions = models.TextField(_("instructions"), blank=True)
    provider = models.CharField(
        _("provider"), max_length=16, choices=Provider.choices, default=Provider.OLLAMA
    )
    model = models.CharField(_("model"), max_length=120, help_text=_("e.g. llama3.2 or gpt-4o-mini"))
    escalation_provider = models.CharField(
        _("escalation provider"),
        max_length=16,
        choices=Provider.choices,
        blank=True,
        help_text=_("The foundation model the router tries when the local answer is invalid or unsure."),
    )
    escalation_model = models.CharField(_("escalation model"), max_length=120, blank=True)
    readable_fields = models.JSONField(_("fields it reads"), default=list, blank=True)
    writable_fields = models.JSONField(_("fields it writes"), default=list, blank=True)
    allowed_phases = models.JSONField(
        _("phases it may move cards to"), default=list, blank=True, help_text=_("Phase keys.")
    )
    decisions = models.JSONField(
        _("decisions"), default=list, blank=True, help_text=_('e.g. ["approve", "reject", "escalate"]')
    )
    authority_field = models.CharField(
        _("authority field"),
        max_length=64,
        blank=True,
        help_text=_("A number or currency field, e.g. amount."),
    )
    authority_limit = models.DecimalField(
        _("authority limit"), max_digits=18, decimal_places=2, null=True, blank=True
    )
    authority_currency = models.CharField(
        _("authority currency"),
        max_length=3,
        blank=True,
        help_text=_("The limit's currency (ISO code, e.g. BRL); empty means the organization's currency."),
    )
    confidence_threshold = models.DecimalField(
        _("confidence threshold"),
        max_digits=3,
        decimal_places=2,
        default=Decimal("0.70"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    may_see_pii = models.BooleanField(_("may see personal data"), default=False)

    class Meta:
        ordering = ["pipe", "name"]
        constraints = [models.UniqueConstraint(fields=["pipe", "key"], name="uniq_agent_key")]
        verbose_name = _("agent")
        verbose_name_plural = _("agents")

    def __str__(self) -> str:
        return self.name

    def model_for(self, tier: str) -> tuple[str, str] | None:
        """(provider, model) that runs this agent on the `local` or `foundation` tier, if any."""
        candidates = [(self.provider, self.model), (self.escalation_provider, self.escalation_model)]
        wanted = LOCAL_PROVIDERS if tier == "local" else FOUNDATION_PROVIDERS
        for provider, model in candidates:
            if provider in wanted and model:
                return provider, model
        return None


class AllowedHost(models.Model):
    """A host an organization's automations may send HTTP requests to ("*.example.com" allows subdomains)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="allowed_hosts")
    host = models.CharField(_("host"), max_length=253)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        ordering = ["organization", "host"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "host"], name="uniq_allowed_host"),
        ]
        verbose_name = _("allowed host")
        verbose_name_plural = _("allowed hosts")

    def __str__(self) -> str:
        return self.host

    def matches(self, hostname: str) -> bool:
        pattern, hostname = self.host.lower().rstrip("."), hostname.lower().rstrip(".")
        if pattern.startswith("*."):
            return hostname.endswith(pattern[1:])
        return hostname == pattern


class DocumentText(models.Model):
    """The text extracted from a card attachment, on a worker, within limits; read by agents and previews."""

    class Status(models.TextChoices):
        PENDING = "pending", _("being extracted")
        DONE = "done", _("extracted")

    card_file = models.OneToOneField(
        "pipes.CardFile", on_delete=models.CASCADE, related_name="extracted_text"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    sha256 = models.CharField(max_length=64, blank=True)  # of the bytes the text was read from
    text = models.TextField(blank=True)
    truncated = models.BooleanField(default=False)
    cuts = models.JSONField(default=list, blank=True)  # which limits cut it: pages, chars, time, stream
    skipped = models.CharField(max_length=200, blank=True)  # why no text was read, if none was
    pages_read = models.PositiveIntegerField(default=0)
    pages_total = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0)
    requested_at = models.DateTimeField(default=timezone.now)
    extracted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("document text")
        verbose_name_plural = _("document texts")

    def __str__(self) -> str:
        return f"{self.card_file_id}: {self.get_status_display()}"
