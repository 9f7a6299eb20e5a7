"""OpenTelemetry traces of runs: a span for each workflow run and each activity, exported over OTLP/HTTP.

Off by default. With ``AIRLOCK_OTEL__ENDPOINT`` set, the worker adds Temporal's
``TracingInterceptor`` with a tracer whose spans go to ``<endpoint>/v1/traces``.
Span attributes are what Temporal puts there (workflow and activity types and
ids); payloads, and so secrets, are never attached.
"""

from __future__ import annotations

from typing import Any

from engine.config import OtelSettings


class Tracing:
    """The tracer provider of one worker, and the interceptors that use it."""

    def __init__(self, settings: OtelSettings) -> None:
        self.provider: Any = None
        self.interceptors: list[Any] = []
        if not settings.endpoint:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from temporalio.contrib.opentelemetry import TracingInterceptor

        self.provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        exporter = OTLPSpanExporter(endpoint=settings.endpoint.rstrip("/") + "/v1/traces", timeout=5)
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        self.interceptors = [TracingInterceptor(self.provider.get_tracer("airlock"), always_create_workflow_spans=True)]

    def flush(self) -> None:
        """Send what is buffered (at worker shutdown, and in tests)."""
        if self.provider is not None:
            self.provider.force_flush(5000)
