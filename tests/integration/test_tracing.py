"""OpenTelemetry: with an OTLP endpoint set, a run's workflow and activities arrive there as spans."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from temporalio.client import Client

from engine import stack
from engine.config import Settings
from engine.runs import start_run
from engine.worker import build_worker
from tests.helpers import write_spec
from tools import support

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A minimal OTLP/HTTP trace receiver on a free port: it keeps every export request."""
    received: list[ExportTraceServiceRequest] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server hook
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", stack.free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


async def test_a_run_is_traced_to_the_otlp_endpoint(client: Client, settings: Settings, tmp_path: Path,
                                                    collector: tuple[str, list[ExportTraceServiceRequest]]) -> None:
    url, received = collector
    support.seed_demo_orders(settings.db_url)
    settings.otel.endpoint = url
    spec = write_spec(tmp_path, [{"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1001"}}]},
                                 {"content": "done"}])
    worker = build_worker(client, settings)
    async with worker:
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"}, requested_by="alice")
        assert (await handle.result()).status == "completed"
    worker.tracing.flush()  # type: ignore[attr-defined]
    spans = [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    names = {s.name for s in spans}
    assert "RunWorkflow:AgentRunWorkflow" in names
    assert {"RunActivity:call_model", "RunActivity:evaluate_policy", "RunActivity:execute_tool"} <= names
    services = {a.value.string_value for r in received for rs in r.resource_spans for a in rs.resource.attributes
                if a.key == "service.name"}
    assert services == {"airlock-worker"}
    # each activity's run is a child of the span the workflow scheduled it in
    started = {s.span_id: s.name.split(":")[1] for s in spans if s.name.startswith("StartActivity:")}
    ran = [s for s in spans if s.name.startswith("RunActivity:")]
    assert ran and all(started.get(s.parent_span_id) == s.name.split(":")[1] for s in ran)


async def test_tracing_is_off_without_an_endpoint(settings: Settings) -> None:
    from engine.tracing import Tracing

    assert Tracing(settings.otel).interceptors == []
