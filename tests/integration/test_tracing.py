"""OpenTelemetry: with an OTLP endpoint set, a run's workflow and activities arrive there as spans."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from temporalio.client import Client

from engine.adapters.tracing import Tracing, run_trace_carrier
from engine.config import Settings
from engine.local import processes as stack
from engine.runtime.temporal import connect
from engine.runtime.worker import build_worker
from tests.helpers import start_run, write_spec
from tests.integration.test_treasury import ACME, pay, treasury_spec
from tools import support

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A minimal OTLP/HTTP trace receiver on a free port: it keeps every export request."""
    received: list[ExportTraceServiceRequest] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
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


def _spans(received: list[ExportTraceServiceRequest]) -> list[Any]:
    return [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


def _attrs(span: Any) -> dict[str, Any]:
    return {a.key: a.value.string_value if a.value.HasField("string_value") else a.value.int_value
            for a in span.attributes}


async def test_a_run_started_by_a_traced_client_is_one_trace_with_http_spans(
        settings: Settings, chain_settings: Settings, tmp_path: Path,
        collector: tuple[str, list[ExportTraceServiceRequest]]) -> None:
    url, received = collector
    settings.otel.endpoint = url
    client = await connect(settings.temporal, settings.otel)  # as the CLI, API server and demo connect
    tracing = Tracing(settings.otel)
    try:
        spec = treasury_spec(tmp_path, pay(ACME, "250"))
        async with build_worker(client, settings):
            handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, run_input={},
                                     requested_by="alice")
            assert (await handle.result()).status == "completed"
        tracing.flush()
    finally:
        tracing.close()
    spans = _spans(received)
    [root] = [s for s in spans if s.name == "StartWorkflow:AgentRunWorkflow"]
    assert not root.parent_span_id
    run = [s for s in spans if s.trace_id == root.trace_id]
    names = {s.name for s in run}
    assert "RunWorkflow:AgentRunWorkflow" in names
    assert {"RunActivity:call_model", "RunActivity:check_call", "RunActivity:execute_tool"} <= names
    # every span of the run is in the run's trace: none of its activities started a trace of its own
    assert not [s.name for s in spans if s.name.startswith("RunActivity:") and s.trace_id != root.trace_id]
    # outgoing HTTP calls are children of the activity that made them
    by_id = {s.span_id: s for s in run}
    http = [(by_id[s.parent_span_id].name if s.parent_span_id in by_id else None, _attrs(s)) for s in run
            if s.kind == s.SPAN_KIND_CLIENT and ("url.full" in _attrs(s) or "http.url" in _attrs(s))]
    urls: dict[str | None, set[str]] = {}
    for parent, attrs in http:
        urls.setdefault(parent, set()).add(str(attrs.get("url.full") or attrs.get("http.url")).rstrip("/"))
    assert urls["RunActivity:call_model"] == {settings.llm.scripted_url + "/chat/completions"}  # our own span
    policy_urls = urls["RunActivity:check_call"]  # validating and deciding a call: one step
    assert f"{settings.opa.url}/v1/data/airlock/treasury_payout/decision" in policy_urls  # aiohttp (OPA)
    assert chain_settings.chain.rpc_url in policy_urls  # the facts, read with requests (web3)
    assert chain_settings.chain.rpc_url in urls["RunActivity:execute_tool"]  # the re-check and the send
    chats = [attrs for parent, attrs in http if parent == "RunActivity:call_model"]
    assert len(chats) == 2  # one per model step
    assert all(c["gen_ai.request.model"] == "treasury.turns.yaml" and c["gen_ai.usage.input_tokens"] > 0
               for c in chats)
    assert {parent for parent, _ in http} <= {"RunActivity:call_model", "RunActivity:check_call",
                                              "RunActivity:execute_tool"}
    services = {a.value.string_value for r in received for rs in r.resource_spans for a in rs.resource.attributes
                if a.key == "service.name"}
    assert services == {"airlock"}


async def test_a_run_started_without_tracing_is_still_one_trace(
        client: Client, settings: Settings, tmp_path: Path,
        collector: tuple[str, list[ExportTraceServiceRequest]]) -> None:
    url, received = collector
    support.seed_demo_orders(settings.db_url)
    settings.otel.endpoint = url
    spec = write_spec(tmp_path, [{"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1001"}}]},
                                 {"content": "done"}])
    worker = build_worker(client, settings)  # the session's client does not trace: the worker does
    try:
        async with worker:
            handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                     run_input={"customer_id": "cus_ana"}, requested_by="alice")
            assert (await handle.result()).status == "completed"
        worker.tracing.flush()  # type: ignore[attr-defined]
    finally:
        worker.tracing.close()  # type: ignore[attr-defined]
    spans = _spans(received)
    trace_id = bytes.fromhex(run_trace_carrier(handle.id)["traceparent"].split("-")[1])
    run = [s for s in spans if s.trace_id == trace_id]
    assert {"RunWorkflow:AgentRunWorkflow", "RunActivity:call_model", "RunActivity:check_call",
            "RunActivity:execute_tool"} <= {s.name for s in run}
    assert not [s.name for s in spans if s.name.startswith("RunActivity:") and s.trace_id != trace_id]
    # each activity's run is a child of the span the workflow scheduled it in
    started = {s.span_id: s.name.split(":")[1] for s in run if s.name.startswith("StartActivity:")}
    ran = [s for s in run if s.name.startswith("RunActivity:")]
    assert ran and all(started.get(s.parent_span_id) == s.name.split(":")[1] for s in ran)


async def test_tracing_is_off_without_an_endpoint(settings: Settings) -> None:
    assert Tracing(settings.otel).interceptors == []
