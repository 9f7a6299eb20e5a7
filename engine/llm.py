"""Model adapter: the only importer of ``openai``; translates its errors.

Any OpenAI-compatible endpoint works. The ``scripted`` provider is the same
code path pointed at the local replay endpoint (``engine.scripted``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from engine.config import LlmSettings, secret_from_env
from engine.errors import ModelError
from engine.models import CallModelInput, CallModelResult, ProposedCall

RETRYABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError)


class RetryableModelError(ModelError):
    """Timeout, connection error, 429 or 5xx: worth another attempt."""

    retryable = True


class ModelClient:
    """Calls the model named by a workflow spec."""

    def __init__(self, settings: LlmSettings) -> None:
        self._settings = settings

    def _client(self, request: CallModelInput) -> tuple[openai.AsyncOpenAI, str, str]:
        spec = request.model
        if spec.provider == "scripted":
            label = f"scripted model ({Path(spec.script or '').name})"
            client = openai.AsyncOpenAI(base_url=self._settings.scripted_url, api_key="scripted",
                                        timeout=spec.timeout_s, max_retries=0)
            return client, spec.script or "", label
        key = secret_from_env(spec.api_key_env) if spec.api_key_env else None
        if spec.api_key_env and not key:
            raise ModelError(f"environment variable {spec.api_key_env} (model.api_key_env) is not set")
        client = openai.AsyncOpenAI(base_url=spec.base_url, api_key=key or "none", timeout=spec.timeout_s,
                                    max_retries=0)
        return client, spec.name, spec.name

    async def complete(self, request: CallModelInput) -> CallModelResult:
        """One chat completion with the workflow's tools.

        Raises:
            RetryableModelError: the endpoint was unreachable, slow or overloaded.
            ModelError: the endpoint refused the request or answered nonsense.
        """
        client, model, label = self._client(request)
        kwargs: dict[str, Any] = {"model": model, "messages": request.messages,
                                  "temperature": request.model.temperature}
        if request.tools:
            kwargs["tools"] = request.tools
        if request.model.max_tokens:
            kwargs["max_tokens"] = request.model.max_tokens
        try:
            async with client:
                response = await client.chat.completions.create(**kwargs)
        except RETRYABLE as exc:
            raise RetryableModelError(f"{label}: {type(exc).__name__}: {exc}") from exc
        except openai.OpenAIError as exc:
            raise ModelError(f"{label}: {type(exc).__name__}: {exc}") from exc
        if not response.choices:
            raise RetryableModelError(f"{label}: response has no choices")
        message = response.choices[0].message
        calls = [ProposedCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
                 for c in message.tool_calls or [] if c.type == "function"]
        usage = response.usage
        return CallModelResult(content=message.content, tool_calls=calls, model=response.model or model,
                               provider_label=label, input_tokens=usage.prompt_tokens if usage else 0,
                               output_tokens=usage.completion_tokens if usage else 0)
