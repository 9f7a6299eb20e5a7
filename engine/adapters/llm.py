"""Model adapter: the only importer of ``openai``; translates its errors.

Any OpenAI-compatible endpoint works. The ``scripted`` provider is the same
code path pointed at the local replay endpoint (``engine.local.scripted``).

A call tries the workflow's primary endpoint, then its ``fallbacks`` in order,
when an endpoint times out, cannot be reached, answers 429 or 5xx, or answers
something that is not a chat completion. A 4xx caused by our own request is
not the endpoint's fault: it ends the call at once, with no fallback. Each
endpoint has a circuit breaker: after ``BREAKER_FAILURES`` failures in a row it
is skipped for ``BREAKER_COOLDOWN_S``. Breakers are kept where ``Breakers``
says: in this process (``MemoryBreakers``), or, in a worker, in the database
every worker shares (``engine.runtime.breakers``), so an endpoint that failed on
one worker is skipped by all of them. When every endpoint fails the activity
fails retryably and Temporal tries again with backoff.

Errors never carry an endpoint's key: the library's message is passed through
``engine.redact.redact_text`` with the endpoint's URL and API key, and is not
chained (Temporal records every cause, and logs print them).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import openai

from engine.adapters.tracing import client_span
from engine.config import LlmSettings, secret_from_env
from engine.errors import ModelError
from engine.redact import redact_text, safe_url
from engine.runtime.activity_io import CallModelInput, CallModelResult, EndpointAttempt, ProposedCall
from engine.spec import EndpointSpec, endpoint_label

FALLBACK_ON = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError,
               openai.APIResponseValidationError)
BREAKER_FAILURES = 3
MAX_ANSWER_BYTES = 512 * 1024
MAX_ANSWER_CALLS = 64
BREAKER_COOLDOWN_S = 30.0
MAX_CLIENTS = 32


class RetryableModelError(ModelError):
    """Every endpoint timed out, was unreachable, overloaded or answered nonsense: worth another round."""

    retryable = True


class _EndpointDown(Exception):
    """This endpoint failed in a way another endpoint may not."""


@dataclass(frozen=True)
class BreakerState:
    """One endpoint's circuit breaker as recorded: failures in a row, and until when it is skipped."""

    failures: int = 0
    open_until: datetime | None = None

    def is_open(self, now: datetime) -> bool:
        return self.open_until is not None and now < self.open_until


CLOSED = BreakerState()


def opens_until(failures: int, now: datetime) -> datetime | None:
    """Until when a breaker that has just counted ``failures`` in a row is open: ``BREAKER_FAILURES`` in a row
    open it for ``BREAKER_COOLDOWN_S`` (each further failure, once it was tried again, opens it anew)."""
    return now + timedelta(seconds=BREAKER_COOLDOWN_S) if failures >= BREAKER_FAILURES else None


def _now() -> datetime:
    return datetime.now(UTC)


class Breakers(Protocol):
    """Where the endpoints' breakers are kept, by an opaque key per endpoint (a hash: no URL, no key)."""

    async def states(self, keys: Sequence[str]) -> Mapping[str, BreakerState]:
        """The recorded state of each of these endpoints that has one (others are closed)."""
        ...

    async def failed(self, key: str, endpoint: str) -> int:
        """Count one more failure in a row of the endpoint (``endpoint``: its label); the count now."""
        ...

    async def opened(self, key: str, until: datetime) -> None:
        """Skip the endpoint until then."""
        ...

    async def succeeded(self, key: str) -> None:
        """The endpoint answered: no failures in a row, not skipped."""
        ...


class MemoryBreakers:
    """Breakers of this process alone (a worker shares them through the database instead)."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}

    async def states(self, keys: Sequence[str]) -> Mapping[str, BreakerState]:
        return {k: self._states[k] for k in keys if k in self._states}

    async def failed(self, key: str, endpoint: str) -> int:
        state = self._states.get(key, CLOSED)
        self._states[key] = BreakerState(state.failures + 1, state.open_until)
        return state.failures + 1

    async def opened(self, key: str, until: datetime) -> None:
        self._states[key] = BreakerState(self._states.get(key, CLOSED).failures, until)

    async def succeeded(self, key: str) -> None:
        self._states.pop(key, None)


def breaker_key(label: str, endpoint: EndpointSpec) -> str:
    """An endpoint's breaker: by label, URL and key variable, hashed (a URL may carry a provider's key)."""
    return hashlib.sha256(f"{label}|{endpoint.base_url}|{endpoint.api_key_env}".encode()).hexdigest()


def _shown(text: str, endpoint: EndpointSpec, client: openai.AsyncOpenAI) -> str:
    """A library's error text without the endpoint's URL secrets or its API key."""
    key = client.api_key if endpoint.provider != "scripted" else None  # "scripted" is no secret, but a word
    return redact_text(text, endpoint.base_url, str(client.base_url), secrets=[key])


def cost_of(endpoint: EndpointSpec, input_tokens: int, output_tokens: int) -> float:
    """Price of one call from the endpoint's per-1k token prices."""
    return round(input_tokens / 1000 * endpoint.price_in_per_1k + output_tokens / 1000 * endpoint.price_out_per_1k,
                 8)


class ModelClient:
    """Calls the model named by a workflow spec, falling back along its list."""

    def __init__(self, settings: LlmSettings, breakers: Breakers | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        self._settings = settings
        self._breakers: Breakers = breakers or MemoryBreakers()
        self._clock = clock
        # One client (its connection pool and TLS context) per endpoint, URL, key and timeout, reused by
        # every call of this worker: building one costs more than a call to a nearby endpoint.
        self._clients: OrderedDict[tuple[str | None, str, float], openai.AsyncOpenAI] = OrderedDict()

    def _client(self, endpoint: EndpointSpec, script: str | None, field: str) -> tuple[openai.AsyncOpenAI, str]:
        if endpoint.provider == "scripted":
            return self._reused(self._settings.scripted_url, "scripted", endpoint.timeout_s), script or ""
        key = secret_from_env(endpoint.api_key_env) if endpoint.api_key_env else None
        if endpoint.api_key_env and not key:
            raise ModelError(f"environment variable {endpoint.api_key_env} ({field}.api_key_env) is not set")
        # The key is read each call, so a rotated key takes effect at once (with a client of its own).
        return self._reused(endpoint.base_url, key or "none", endpoint.timeout_s), endpoint.name

    def _reused(self, base_url: str | None, api_key: str, timeout_s: float) -> openai.AsyncOpenAI:
        """The client for these settings, made on first use; the least recently used beyond
        ``MAX_CLIENTS`` is dropped (a rotated key, an endpoint no longer named)."""
        wanted = (base_url, hashlib.sha256(api_key.encode()).hexdigest(), timeout_s)  # no key in the cache's keys
        client = self._clients.pop(wanted, None) or openai.AsyncOpenAI(base_url=base_url, api_key=api_key,
                                                                       timeout=timeout_s, max_retries=0)
        self._clients[wanted] = client
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        return client

    async def complete(self, request: CallModelInput) -> CallModelResult:
        """One chat completion with the workflow's tools, from the first endpoint that answers.

        Raises:
            RetryableModelError: no endpoint answered (each attempt is in the message).
            ModelError: an endpoint refused our request (4xx), or a key is missing.
        """
        spec = request.model
        endpoints: list[EndpointSpec] = [spec, *spec.fallbacks]
        labels = [endpoint_label(endpoint, spec.script) for endpoint in endpoints]  # a label hides keys
        keys = [breaker_key(label, endpoint) for label, endpoint in zip(labels, endpoints, strict=True)]
        breakers = await self._breakers.states(keys)
        attempts: list[EndpointAttempt] = []
        for index, (endpoint, label, key) in enumerate(zip(endpoints, labels, keys, strict=True)):
            breaker = breakers.get(key, CLOSED)
            if breaker.is_open(self._clock()):
                attempts.append(EndpointAttempt(endpoint=label, error="circuit open: skipped"))
                continue
            started = time.perf_counter()
            try:
                field = "model" if index == 0 else f"model.fallbacks[{index - 1}]"
                result = await self._call(request, endpoint, label, field)
            except _EndpointDown as exc:
                if (until := opens_until(await self._breakers.failed(key, label), self._clock())) is not None:
                    await self._breakers.opened(key, until)
                attempts.append(EndpointAttempt(endpoint=label, error=str(exc),
                                                latency_ms=round((time.perf_counter() - started) * 1000, 2)))
                continue
            if breaker.failures:  # a healthy endpoint's answer costs no write
                await self._breakers.succeeded(key)
            latency = round((time.perf_counter() - started) * 1000, 2)
            attempts.append(EndpointAttempt(endpoint=label, latency_ms=latency))
            return result.model_copy(update={"attempts": attempts, "fallback_used": index > 0, "latency_ms": latency,
                                             "cost": cost_of(endpoint, result.input_tokens, result.output_tokens)})
        raise RetryableModelError("no model endpoint answered: " +
                                  "; ".join(f"{a.endpoint}: {a.error}" for a in attempts))

    async def _call(self, request: CallModelInput, endpoint: EndpointSpec, label: str,
                    field: str) -> CallModelResult:
        client, model = self._client(endpoint, request.model.script, field)
        kwargs: dict[str, Any] = {"model": model, "messages": request.messages,
                                  "temperature": request.model.temperature}
        if request.tools:
            kwargs["tools"] = request.tools
        if request.model.max_tokens:
            kwargs["max_tokens"] = request.model.max_tokens
        if request.model.seed is not None:
            kwargs["seed"] = request.model.seed
        if request.output_schema is not None and request.model.response_format:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "final_answer", "schema": request.output_schema}}
        try:
            shown = Path(model).name if endpoint.provider == "scripted" else model  # a script's file, not its path
            # A span per endpoint request: openai's httpx2 has no instrumentation.
            with client_span(f"chat {shown}", {
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": endpoint.provider,
                    "gen_ai.request.model": shown, "http.request.method": "POST",
                    "url.full": safe_url(str(client.base_url).rstrip("/") + "/chat/completions"),
                    "airlock.endpoint": label}, scope="airlock.llm") as span:
                response = await client.chat.completions.create(**kwargs)
                usage = getattr(response, "usage", None)
                if usage is not None:
                    span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens or 0)
                    span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens or 0)
        except FALLBACK_ON as exc:
            raise _EndpointDown(_shown(f"{type(exc).__name__}: {exc}", endpoint, client)) from None
        except openai.APIStatusError as exc:  # a 4xx: our request is wrong; another endpoint would refuse it too
            raise ModelError(f"{label}: " + _shown(f"{type(exc).__name__}: {exc}", endpoint, client)) from None
        except openai.OpenAIError as exc:
            raise _EndpointDown(_shown(f"{type(exc).__name__}: {exc}", endpoint, client)) from None
        except ValueError as exc:  # a body that is not JSON
            raise _EndpointDown(_shown(f"malformed answer: {type(exc).__name__}: {exc}", endpoint, client)) from None
        if not getattr(response, "choices", None):
            raise _EndpointDown("the answer has no choices (not a chat completion)")
        message = response.choices[0].message
        calls = [ProposedCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
                 for c in message.tool_calls or [] if c.type == "function"]
        size = len((message.content or "").encode()) + sum(len(f"{c.id}{c.name}{c.arguments}".encode()) for c in calls)
        if size > MAX_ANSWER_BYTES or len(calls) > MAX_ANSWER_CALLS:
            # Answers are recorded in the run's history, whose messages Temporal caps at a few MB.
            raise _EndpointDown(f"the answer is {size} bytes with {len(calls)} tool call(s); at most "
                                f"{MAX_ANSWER_BYTES} bytes and {MAX_ANSWER_CALLS} calls are accepted")
        usage = response.usage
        return CallModelResult(content=message.content, tool_calls=calls, model=response.model or model,
                               provider_label=label, input_tokens=usage.prompt_tokens if usage else 0,
                               output_tokens=usage.completion_tokens if usage else 0)
