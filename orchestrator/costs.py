"""Turning usage into money: model tokens, local compute and minutes of human review.

Prices come from settings (all in settings.TRILHO_COST_CURRENCY):
- TRILHO_MODEL_PRICING: {"provider/model": {"input": Decimal, "output": Decimal}} per million
  tokens, over DEFAULT_PRICING below; "provider/*" entries apply to a provider's other models.
- TRILHO_LOCAL_COMPUTE_COST_PER_1M: what a million tokens on the local (Ollama) model cost.
- TRILHO_HUMAN_COST_PER_MINUTE: a minute of a reviewer's time.
- TRILHO_BASELINE_MODEL: the foundation model the cost page compares against.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings

MILLION = Decimal(1_000_000)
CENT_PRECISION = Decimal("0.000001")

DEFAULT_PRICING: dict[str, dict[str, Decimal]] = {
    "openai/gpt-4o-mini": {"input": Decimal("0.15"), "output": Decimal("0.60")},
    "openai/gpt-4o": {"input": Decimal("2.50"), "output": Decimal("10.00")},
    "openai/*": {"input": Decimal("2.50"), "output": Decimal("10.00")},
    "anthropic/*": {"input": Decimal("3.00"), "output": Decimal("15.00")},
}
ESTIMATED_OUTPUT_TOKENS = 150  # what a foundation model would write for one step, for the baseline


def cost_currency() -> str:
    return getattr(settings, "TRILHO_COST_CURRENCY", "") or getattr(
        settings, "TRILHO_DEFAULT_CURRENCY", "BRL"
    )


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def price_for(provider: str, model: str) -> dict[str, Decimal] | None:
    pricing = {**DEFAULT_PRICING, **(getattr(settings, "TRILHO_MODEL_PRICING", None) or {})}
    entry = pricing.get(f"{provider}/{model}") or pricing.get(f"{provider}/*")
    if entry is None:
        return None
    return {"input": _decimal(entry.get("input", 0)), "output": _decimal(entry.get("output", 0))}


def model_cost(*, provider: str, model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """The cost of one model call."""
    if provider == "ollama":
        per_million = _decimal(getattr(settings, "TRILHO_LOCAL_COMPUTE_COST_PER_1M", Decimal("0.02")))
        return (Decimal(input_tokens + output_tokens) * per_million / MILLION).quantize(CENT_PRECISION)
    price = price_for(provider, model)
    if price is None:
        return Decimal(0)
    total = Decimal(input_tokens) * price["input"] + Decimal(output_tokens) * price["output"]
    return (total / MILLION).quantize(CENT_PRECISION)


def baseline_model() -> tuple[str, str]:
    provider, _sep, model = str(getattr(settings, "TRILHO_BASELINE_MODEL", "openai/gpt-4o")).partition("/")
    return provider, model


def estimate_tokens(payload: Any) -> int:
    """About four characters per token, as most tokenizers average on mixed text."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
    return max(1, len(text) // 4)


def baseline_cost(*, input_tokens: int, output_tokens: int = ESTIMATED_OUTPUT_TOKENS) -> Decimal:
    """What one step would cost on the baseline foundation model."""
    provider, model = baseline_model()
    return model_cost(provider=provider, model=model, input_tokens=input_tokens, output_tokens=output_tokens)


def human_cost(*, minutes: Decimal) -> Decimal:
    per_minute = _decimal(getattr(settings, "TRILHO_HUMAN_COST_PER_MINUTE", Decimal("1.50")))
    return (minutes * per_minute).quantize(CENT_PRECISION)
