"""Turning usage into money: model tokens, local compute and minutes of human review.

Every amount is Money: a Decimal with its currency. Adding two amounts of different currencies
raises CurrencyMismatch; an amount changes currency only through `Money.to`, at a rate the
operator set (TRILHO_FX_RATES, each with the date it was taken), never at a guessed one.

Prices come from settings:
- TRILHO_MODEL_PRICING: {"provider/model": {"input": Decimal, "output": Decimal, "currency": "USD"}}
  per million tokens, over DEFAULT_PRICING below (list prices, in USD); "provider/*" entries apply
  to a provider's other models. An entry without a currency is in USD.
- TRILHO_LOCAL_COMPUTE_COST_PER_1M: what a million tokens on the local (Ollama) model cost, and
- TRILHO_HUMAN_COST_PER_MINUTE: a minute of a reviewer's time, both in TRILHO_COST_CURRENCY.
- TRILHO_COST_CURRENCY: the currency runs are recorded and reported in (USD by default, the
  currency of the list prices); model prices in another currency are converted at record time.
- TRILHO_BASELINE_MODEL: the foundation model the cost page compares against (an estimate).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MILLION = Decimal(1_000_000)
CENT_PRECISION = Decimal("0.000001")
PRICE_CURRENCY = "USD"  # of DEFAULT_PRICING, and of a TRILHO_MODEL_PRICING entry that names none

DEFAULT_PRICING: dict[str, dict[str, Decimal]] = {
    "openai/gpt-4o-mini": {"input": Decimal("0.15"), "output": Decimal("0.60")},
    "openai/gpt-4o": {"input": Decimal("2.50"), "output": Decimal("10.00")},
    "openai/*": {"input": Decimal("2.50"), "output": Decimal("10.00")},
    "anthropic/*": {"input": Decimal("3.00"), "output": Decimal("15.00")},
}
ESTIMATED_OUTPUT_TOKENS = 150  # what a foundation model would write for one step, for the baseline
CHARS_PER_TOKEN = 4


class CurrencyMismatch(ValueError):
    """Two amounts of different currencies were added (or compared) without a conversion."""


class NoRate(ImproperlyConfigured):
    """An amount must change currency but the operator set no rate for that pair (TRILHO_FX_RATES)."""


@dataclass(frozen=True)
class FxRate:
    """One unit of `source` is `rate` units of `target`, as the operator set it on `as_of`."""

    source: str
    target: str
    rate: Decimal
    as_of: dt.date | None

    def trace(self) -> dict[str, str]:
        return {
            "pair": f"{self.source}:{self.target}",
            "rate": str(self.rate),
            "as_of": self.as_of.isoformat() if self.as_of else "",
        }


@dataclass(frozen=True)
class Money:
    """An amount and its currency; adding another currency raises CurrencyMismatch."""

    amount: Decimal
    currency: str

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def _same(self, other: Money) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot add {other.currency} to {self.currency} without a rate")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.amount + self._same(other).amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount - self._same(other).amount, self.currency)

    def to(self, currency: str) -> Money:
        """This amount in `currency`, at the operator's rate; raises NoRate when none is set."""
        if currency == self.currency:
            return self
        rate = fx_rate(self.currency, currency)
        return Money((self.amount * rate.rate).quantize(CENT_PRECISION), currency)

    def __str__(self) -> str:
        return f"{self.currency} {self.amount}"


def fx_rate(source: str, target: str) -> FxRate:
    """The operator's rate from `source` to `target` (the inverse of target→source if only that is set)."""
    rates = getattr(settings, "TRILHO_FX_RATES", None) or {}
    if source == target:
        return FxRate(source, target, Decimal(1), None)
    if (source, target) in rates:
        rate, as_of = rates[(source, target)]
        return FxRate(source, target, rate, as_of)
    if (target, source) in rates:
        rate, as_of = rates[(target, source)]
        return FxRate(source, target, Decimal(1) / rate, as_of)
    raise NoRate(
        f"no exchange rate from {source} to {target}: set TRILHO_FX_RATES, e.g. "
        f'"{source}:{target}=1.00@{dt.date.today().isoformat()}"'
    )


def cost_currency() -> str:
    return getattr(settings, "TRILHO_COST_CURRENCY", "") or PRICE_CURRENCY


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class Price:
    """A model's price per million tokens, in its own currency."""

    input: Decimal
    output: Decimal
    currency: str


def price_for(provider: str, model: str) -> Price | None:
    pricing = {**DEFAULT_PRICING, **(getattr(settings, "TRILHO_MODEL_PRICING", None) or {})}
    entry = pricing.get(f"{provider}/{model}") or pricing.get(f"{provider}/*")
    if entry is None:
        return None
    return Price(
        input=_decimal(entry.get("input", 0)),
        output=_decimal(entry.get("output", 0)),
        currency=str(entry.get("currency") or PRICE_CURRENCY).upper(),
    )


def model_cost(*, provider: str, model: str, input_tokens: int, output_tokens: int) -> Money:
    """The cost of one model call, in the currency of its price (local compute: the cost currency)."""
    if provider == "ollama":
        per_million = _decimal(getattr(settings, "TRILHO_LOCAL_COMPUTE_COST_PER_1M", Decimal("0.02")))
        amount = Decimal(input_tokens + output_tokens) * per_million / MILLION
        return Money(amount.quantize(CENT_PRECISION), cost_currency())
    price = price_for(provider, model)
    if price is None:
        return Money.zero(cost_currency())
    total = Decimal(input_tokens) * price.input + Decimal(output_tokens) * price.output
    return Money((total / MILLION).quantize(CENT_PRECISION), price.currency)


def baseline_model() -> tuple[str, str]:
    provider, _sep, model = str(getattr(settings, "TRILHO_BASELINE_MODEL", "openai/gpt-4o")).partition("/")
    return provider, model


def estimate_tokens(payload: Any) -> int:
    """About four characters per token, as most tokenizers average on mixed text."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
    return max(1, len(text) // CHARS_PER_TOKEN)


def baseline_cost(*, input_tokens: int, output_tokens: int = ESTIMATED_OUTPUT_TOKENS) -> Money:
    """An estimate of what one step would cost on the baseline foundation model, in its price's currency."""
    provider, model = baseline_model()
    return model_cost(provider=provider, model=model, input_tokens=input_tokens, output_tokens=output_tokens)


def human_cost(*, minutes: Decimal) -> Money:
    """`minutes` of a reviewer's time, in the cost currency."""
    per_minute = _decimal(getattr(settings, "TRILHO_HUMAN_COST_PER_MINUTE", Decimal("1.50")))
    return Money((minutes * per_minute).quantize(CENT_PRECISION), cost_currency())


def review_minutes(*, opened_at: dt.datetime | None, now: dt.datetime) -> Decimal:
    """The minutes a reviewer spent on a task: from its first opening to the decision, bounded to
    [0.5, 120]. A task decided without being opened (e.g. approved in bulk from the list) counts 0:
    nobody's time is billed on a guess."""
    if opened_at is None:
        return Decimal(0)
    minutes = Decimal((now - opened_at).total_seconds()) / Decimal(60)
    return min(max(minutes, Decimal("0.5")), Decimal(120)).quantize(Decimal("0.01"))


def rates_in_use(currency: str) -> list[FxRate]:
    """The operator's rates that convert into `currency` (for the cost page's note on conversions)."""
    rates = getattr(settings, "TRILHO_FX_RATES", None) or {}
    found = []
    for source, target in sorted(rates):
        if currency in (source, target):
            other = target if source == currency else source
            found.append(fx_rate(other, currency))
    return found


def cost_trace(money: Money, currency: str) -> dict[str, Any]:
    """How `money` was recorded in `currency`: the amount as priced and, if converted, the rate used."""
    traced: dict[str, Any] = {"amount": str(money.amount), "currency": money.currency}
    if money.currency != currency:
        traced["recorded"] = str(money.to(currency).amount)
        traced["recorded_currency"] = currency
        traced["rate"] = fx_rate(money.currency, currency).trace()
    return traced
