"""Chat models behind one call: Ollama (langchain-ollama), OpenAI-compatible endpoints
(langchain-openai) and Anthropic (langchain-anthropic, an optional extra).

`model_call` returns the raw text and token usage, or raises ModelUnavailable for what a
retry or another model may fix (unreachable, timeout, 5xx, rate limit, missing client).
Parsing the text is agents.output's job: a model's answer is data, never trusted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from .models import Provider


class ModelUnavailable(Exception):
    """The model could not answer now (network, timeout, server error, missing client)."""

    def __init__(self, message: str, *, provider: str = "", model: str = ""):
        super().__init__(message)
        self.provider = provider
        self.model = model


class ModelRefused(Exception):
    """The provider refused the request itself (bad request, authentication); retrying will not help."""


@dataclass(frozen=True)
class ModelReply:
    """What a model said and what it cost in tokens."""

    provider: str
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    latency_ms: int


def _timeout(timeout: float | None) -> float:
    return float(timeout or getattr(settings, "TRILHO_MODEL_TIMEOUT_SECONDS", 60))


def chat_model_build(*, provider: str, model: str, timeout: float | None = None, schema: dict | None = None):
    """The langchain chat model for `provider`/`model`, answering JSON (following `schema` where supported)."""
    seconds = _timeout(timeout)
    if provider == Provider.OLLAMA:
        from langchain_ollama import ChatOllama

        return ChatOllama(
            model=model,
            base_url=getattr(settings, "OLLAMA_BASE_URL", "http://127.0.0.1:11434"),
            format=schema or "json",
            temperature=0,
            client_kwargs={"timeout": seconds},
        )
    if provider == Provider.OPENAI:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=model,
            base_url=getattr(settings, "OPENAI_BASE_URL", "") or None,
            api_key=getattr(settings, "OPENAI_API_KEY", "") or "not-configured",
            timeout=seconds,
            max_retries=0,  # the rail retries with backoff and records every attempt
            temperature=0,
        ).bind(response_format={"type": "json_object"})
    if provider == Provider.ANTHROPIC:
        try:
            from langchain_anthropic import ChatAnthropic
        except ImportError:
            raise ModelUnavailable(
                "langchain-anthropic is not installed (pip install trilho[anthropic])",
                provider=provider,
                model=model,
            ) from None
        return ChatAnthropic(
            model=model,
            api_key=getattr(settings, "ANTHROPIC_API_KEY", "") or "not-configured",
            timeout=seconds,
            max_retries=0,
            temperature=0,
        )
    raise ModelRefused(f"unknown provider {provider!r}")


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TimeoutException | httpx.TransportError | TimeoutError | ConnectionError):
        return True
    try:
        import openai

        if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
            return True
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code >= 500 or exc.status_code in (408, 409, 429)
    except ImportError:  # pragma: no cover - langchain-openai depends on openai
        pass
    try:
        import ollama

        if isinstance(exc, ollama.ResponseError):
            return exc.status_code >= 500 or exc.status_code in (-1, 408, 429)
    except ImportError:  # pragma: no cover
        pass
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text[:300]}" if text else exc.__class__.__name__


def _usage(message: Any) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


def _text(message: Any) -> str:
    content = getattr(message, "content", "")
    if isinstance(content, list):  # content blocks (Anthropic)
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def model_call(
    *,
    provider: str,
    model: str,
    system: str,
    user: str,
    schema: dict | None = None,
    timeout: float | None = None,
) -> ModelReply:
    """Ask the model once. Raises ModelUnavailable (transient) or ModelRefused (permanent)."""
    from langchain_core.messages import HumanMessage, SystemMessage

    chat = chat_model_build(provider=provider, model=model, timeout=timeout, schema=schema)
    started = time.monotonic()
    try:
        message = chat.invoke([SystemMessage(content=system), HumanMessage(content=user)])
    except Exception as exc:  # noqa: BLE001 - classified below; the client's own types vary by provider
        if _is_transient(exc):
            raise ModelUnavailable(_describe(exc), provider=provider, model=model) from exc
        raise ModelRefused(_describe(exc)) from exc
    input_tokens, output_tokens = _usage(message)
    return ModelReply(
        provider=provider,
        model=model,
        text=_text(message),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=int((time.monotonic() - started) * 1000),
    )
