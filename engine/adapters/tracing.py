"""OpenTelemetry traces of runs: one trace per run, exported over OTLP/HTTP.

Off by default. With ``AIRLOCK_OTEL__ENDPOINT`` set, a process that starts
runs (CLI, API server, demo) adds Temporal's ``TracingInterceptor`` to its
client, so starting a run opens the trace; the worker carries it through the
workflow and every activity; inside activities the HTTP calls to the model
(a ``chat`` span per endpoint tried), OPA (aiohttp) and the chain node
(requests) are child spans. A run
started by a client that does not trace still gets one trace: its id is
derived from the run id (the root span is then missing from the trace).

Span attributes are what Temporal and the HTTP instrumentations put there,
with URLs as ``engine.redact.safe_url`` shows them (scheme, host and path,
token-like path segments such as an RPC provider's API key replaced); headers
and payloads, and so secrets, are never attached.

This module is the only importer of ``opentelemetry``: other modules open
their own spans through :func:`client_span`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from temporalio import workflow
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor

from engine.config import OtelSettings
from engine.redact import safe_url

_URL_KEYS = ("url.full", "http.url")
_lock = threading.Lock()
_state: dict[str, Any] = {"provider": None, "fanout": None, "exporters": {}}


def _redact(span: Any, url: Any) -> None:
    if span is None or not span.is_recording():
        return
    for key in _URL_KEYS:
        span.set_attribute(key, safe_url(str(url)))


def _instrument(provider: Any) -> None:
    """Spans for outgoing HTTP (once per process): httpx, aiohttp and requests.

    The ``openai`` client speaks httpx2, which no instrumentation covers; ``engine.adapters.llm`` opens its own span.
    """
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    async def httpx_hook(span: Any, request: Any) -> None:
        _redact(span, request.url)

    HTTPXClientInstrumentor().instrument(tracer_provider=provider,
                                         request_hook=lambda span, request: _redact(span, request.url),
                                         async_request_hook=httpx_hook)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider,
                                           request_hook=lambda span, params: _redact(span, params.url))
    RequestsInstrumentor().instrument(tracer_provider=provider,
                                      request_hook=lambda span, request: _redact(span, request.url))


def _provider(settings: OtelSettings) -> Any:
    """The process's tracer provider; it sends spans to every endpoint a ``Tracing`` asked for."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class Fanout(SpanProcessor):
        def __init__(self) -> None:
            self.processors: dict[str, Any] = {}

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            for p in list(self.processors.values()):
                p.on_start(span, parent_context=parent_context)

        def on_end(self, span: Any) -> None:
            for p in list(self.processors.values()):
                p.on_end(span)

        def shutdown(self) -> None:
            for p in list(self.processors.values()):
                p.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return all(p.force_flush(timeout_millis) for p in list(self.processors.values()))

    with _lock:
        if _state["provider"] is None:
            _state["fanout"] = Fanout()
            provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
            provider.add_span_processor(_state["fanout"])
            _instrument(provider)
            trace.set_tracer_provider(provider)  # for our own spans (model calls), via trace.get_tracer
            _state["provider"] = provider
        endpoint = (settings.endpoint or "").rstrip("/") + "/v1/traces"
        fanout = _state["fanout"]
        if endpoint not in fanout.processors:
            fanout.processors[endpoint] = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5),
                                                             schedule_delay_millis=500)
        return _state["provider"], fanout.processors[endpoint]


class Tracing:
    """Tracing for one process: the interceptor Temporal's client and worker use, and a flush."""

    def __init__(self, settings: OtelSettings) -> None:
        self.provider: Any = None
        self.interceptors: list[Any] = []
        self._processor: Any = None
        if not settings.endpoint:
            return
        self.provider, self._processor = _provider(settings)
        self.interceptors = [RunTracingInterceptor(self.provider.get_tracer("airlock"),
                                                   always_create_workflow_spans=True)]

    def flush(self) -> None:
        """Send what is buffered (before a process exits, at worker shutdown, and in tests)."""
        if self._processor is not None:
            self._processor.force_flush(5000)

    def close(self) -> None:
        """Flush, then stop exporting to this endpoint (spans still go to the process's other endpoints)."""
        if self._processor is None:
            return
        with _lock:
            fanout = _state["fanout"]
            for endpoint, processor in list(fanout.processors.items()):
                if processor is self._processor:
                    del fanout.processors[endpoint]
        self._processor.shutdown()
        self._processor = None


def flush_all() -> None:
    """Send every span this process buffered (before it exits)."""
    if _state["fanout"] is not None:
        _state["fanout"].force_flush(5000)


class SpanAttributes(Protocol):
    """What the body of :func:`client_span` may do with its span."""

    def set_attribute(self, key: str, value: Any) -> None: ...


@cache
def _tracer(scope: str) -> Any:
    return trace.get_tracer(scope)  # a proxy until a provider is set, then the provider's tracer


@contextmanager
def client_span(name: str, attributes: Mapping[str, Any], *, scope: str) -> Iterator[SpanAttributes]:
    """A client span for one outgoing request that no HTTP instrumentation sees, under the current span.

    Without tracing it records nothing. An exception leaving the block is recorded on the span, which
    is then marked failed. ``scope`` names the instrumenting module (e.g. ``airlock.llm``).
    """
    with _tracer(scope).start_as_current_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes)) as span:
        yield span


def run_trace_carrier(run_id: str) -> dict[str, str]:
    """A W3C trace context whose trace id is derived from the run id (same on every worker and replay)."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()
    return {"traceparent": f"00-{digest[:32]}-{digest[32:48]}-01"}


class RunTracingInbound(TracingWorkflowInboundInterceptor):
    """Workflow spans under the starter's trace, or else under one derived from the run id."""

    def _load_workflow_context_carrier(self) -> Any:
        carrier = super()._load_workflow_context_carrier()
        if not carrier:
            derived: dict[str, list[str] | str] = {**run_trace_carrier(workflow.info().workflow_id)}
            carrier = self._workflow_context_carrier = derived
        return carrier


class RunTracingInterceptor(TracingInterceptor):
    """Temporal's tracing interceptor, with :class:`RunTracingInbound` in workflows."""

    def workflow_interceptor_class(self, input: Any) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)
        return RunTracingInbound
