"""Past one machine: two worker processes and two UI/API processes on one Temporal and one PostgreSQL.

What must hold when the parts of a deployment run as several processes: runs spread over the workers,
a decision given on one UI/API instance is seen on the other, a session started on one works on the
other (they share the session secret and the database), the model endpoints' circuit breaker and the
daily cost cap hold across workers, and no effect happens twice when a worker is killed mid-run.

The processes are real (``python -m engine.cli worker`` and ``... ui``), as a deployment runs them;
the workers get the assertions' public key only, the UI instances the private key and one session
secret (the second instance reads it, and the database URL, from files, as from compose secrets),
each process a state folder of its own (as on separate machines).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from engine.config import Settings
from engine.local import processes as stack
from engine.private import private_dir, write_private
from engine.runtime.payloads import RunResult
from engine.spec import ResolvedSpec
from engine.store.db import make_engine
from engine.store.tables import ModelCallRow, ToolExecutionRow
from tests.conftest import PASSWORD, Services, copy_workflows, postgres_database, signing_key
from tests.helpers import ROOT, refund, start_run, write_spec
from tools import support

pytestmark = pytest.mark.faults

SESSION_SECRET = "topology-" + uuid.uuid4().hex  # what every UI instance of a deployment shares
LOOKUP = {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1003"}}]}
SMALL_REFUND = {"tool_calls": [refund("A-1003", "5.00")]}  # within the automatic limit: no person involved


@dataclass
class Topology:
    settings: Settings
    workers: list[subprocess.Popen[bytes]]
    uis: list[str]  # base URLs
    specs: dict[str, ResolvedSpec]
    logs: Path
    identities: dict[str, int] = field(default_factory=dict)  # Temporal identity -> worker index

    def worker_of(self, identity: str) -> int | None:
        return self.identities.get(identity)


def _verify_key() -> str:
    private = serialization.load_pem_private_key(signing_key().encode(), password=None)
    return private.public_key().public_bytes(serialization.Encoding.PEM,  # type: ignore[union-attr]
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _env(settings: Settings, state: Path, **extra: str) -> dict[str, str]:
    return {"AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_STATE_DIR": str(state),
            "AIRLOCK_WORKFLOWS_DIR": str(settings.workflows_dir), "AIRLOCK_DATABASE_URL": str(settings.database_url),
            "AIRLOCK_TEMPORAL__ADDRESS": settings.temporal.address,
            "AIRLOCK_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue, "AIRLOCK_OPA__URL": settings.opa.url,
            "AIRLOCK_LLM__SCRIPTED_URL": settings.llm.scripted_url, "PYTHONUNBUFFERED": "1", **extra}


def _specs(folder: Path, scripted_url: str) -> dict[str, ResolvedSpec]:
    """The workflows the processes serve: plain refunds, one that needs approval, a failing primary
    endpoint (the breaker; the scripted model's fault path), a tiny daily cost cap."""
    copy_workflows(folder)
    scripted = folder / "faulty.turns.yaml"
    return {
        "refund": write_spec(folder, [LOOKUP, SMALL_REFUND, {"content": "done"}], "refund.yaml",
                             name="topology-refund", model={"provider": "scripted",
                                                            "script": str(folder / "refund.turns.yaml"),
                                                            "timeout_s": 5}),
        "approval": write_spec(folder, [{"tool_calls": [refund("A-1002", "180.00")]}, {"content": "done"}],
                               "approval.yaml", name="topology-approval"),
        "breaker": write_spec(folder, [LOOKUP, LOOKUP, LOOKUP, {"content": "done"}], "faulty.yaml",
                              name="topology-breaker", model={
                                  "provider": "openai", "name": str(scripted), "script": str(scripted),
                                  "base_url": scripted_url.removesuffix("/v1") + "/fault/500/v1", "timeout_s": 5,
                                  "fallbacks": [{"provider": "scripted"}]}),
        "budget": write_spec(folder, [LOOKUP, {"content": "done"}], "budget.yaml", name="topology-budget",
                             limits={"daily_cost": 0.000001},
                             model={"provider": "scripted", "script": str(folder / "budget.turns.yaml"),
                                    "price_in_per_1k": 1.0}),
    }


@pytest.fixture(scope="module")
async def topology(services: Services, postgres_url: str,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    base = tmp_path_factory.mktemp("topology")
    settings = Settings(project_dir=ROOT, workflows_dir=base / "workflows", state_dir=base / "state",
                        database_url=postgres_database(postgres_url),
                        temporal={"address": services.temporal_address, "task_queue": f"tq-{uuid.uuid4().hex[:8]}"},
                        opa={"url": services.opa_url}, llm={"scripted_url": services.scripted_url})
    specs = _specs(base / "workflows", services.scripted_url)
    support.reset_demo_ledger(settings.db_url)
    procs: list[subprocess.Popen[bytes]] = []
    logs = base / "logs"
    logs.mkdir()
    try:
        for i in (1, 2):
            procs.append(stack.launch_python(["-m", "engine.cli", "worker"], logs / f"worker-{i}.log", cwd=ROOT,
                                             tethered=True, env=_env(settings, base / f"worker-{i}",
                                                                     AIRLOCK_AUTH__VERIFY_KEY=_verify_key())))
        ports = [stack.free_port(), stack.free_port()]
        secrets = private_dir(base / "secrets")  # the second instance reads its secrets from files
        write_private(secrets / "session-secret", SESSION_SECRET + "\n")
        write_private(secrets / "database-url", str(settings.database_url) + "\n")
        for i, port in enumerate(ports, 1):
            env = _env(settings, base / f"ui-{i}", AIRLOCK_UI__PORT=str(port), AIRLOCK_AUTH__SIGNING_KEY=signing_key())
            if i == 1:
                env["AIRLOCK_UI__SECRET_KEY"] = SESSION_SECRET
            else:
                del env["AIRLOCK_DATABASE_URL"]
                env.update(AIRLOCK_UI__SECRET_KEY_FILE=str(secrets / "session-secret"),
                           AIRLOCK_DATABASE_URL_FILE=str(secrets / "database-url"))
            procs.append(stack.launch_python(["-m", "engine.cli", "ui"], logs / f"ui-{i}.log", cwd=ROOT,
                                             tethered=True, env=env))
        for i in (1, 2):
            log = logs / f"worker-{i}.log"
            await asyncio.to_thread(stack.wait_until, lambda log=log: "worker ready" in log.read_text(errors="replace"),
                                    f"worker {i}", procs[i - 1], 90, log)
        for i, port in enumerate(ports, 1):
            await asyncio.to_thread(stack.wait_until, lambda port=port: stack.http_ok(f"http://127.0.0.1:{port}/login"),
                                    f"ui {i}", procs[1 + i], 90, logs / f"ui-{i}.log")
        host = socket.gethostname()
        yield Topology(settings, procs[:2], [f"http://127.0.0.1:{p}" for p in ports], specs, logs,
                       {f"{procs[0].pid}@{host}": 0, f"{procs[1].pid}@{host}": 1})
    finally:
        for proc in procs:
            stack.stop_process(proc)


async def _identities(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, str]]:
    """Who did what in a run: ("workflow", identity) per workflow task, (activity name, identity) per activity."""
    scheduled: dict[int, str] = {}
    done: list[tuple[str, str]] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            done.append((scheduled[attrs.scheduled_event_id], attrs.identity))
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            done.append(("workflow", event.workflow_task_started_event_attributes.identity))
    return done


async def _workers_of(topology: Topology, handle: WorkflowHandle[Any, Any], what: str | None = None) -> set[int]:
    """The workers (0, 1) that did any part of a run, or its activities named ``what``."""
    found = {topology.worker_of(identity) for name, identity in await _identities(handle) if what in (None, name)}
    assert None not in found, f"{handle.id}: a part of it was done by a process other than the two workers"
    return {w for w in found if w is not None}


async def _start(client: Client, topology: Topology, spec: str, count: int) -> list[WorkflowHandle[Any, Any]]:
    return list(await asyncio.gather(*(
        start_run(client, task_queue=topology.settings.temporal.task_queue, spec=topology.specs[spec],
                  run_input={"customer_id": "cus_ana"}) for _ in range(count))))


async def _results(handles: list[WorkflowHandle[Any, Any]], timeout: float = 90) -> list[RunResult]:
    return list(await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout))


async def test_runs_spread_over_both_workers(client: Client, topology: Topology) -> None:
    handles = await _start(client, topology, "refund", 16)
    results = await _results(handles)
    assert {r.status for r in results} == {"completed"}
    workers = [await _workers_of(topology, h) for h in handles]
    assert {0, 1} <= set().union(*workers), f"every run went to the same worker: {workers}"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


async def _sign_in(http: httpx.AsyncClient, name: str) -> str:
    """Sign in through the form; the session's CSRF token."""
    form = await http.post("/login", data={"username": name, "password": PASSWORD,
                                           "csrf": _csrf((await http.get("/login")).text), "next": "/"})
    assert form.status_code == 303, form.text
    return _csrf((await http.get("/")).text)


async def _poll(fetch: Any, done: Any, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if done(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"not there after {timeout}s: {value}"
        await asyncio.sleep(0.2)


async def test_sessions_and_decisions_cross_ui_instances(client: Client, topology: Topology) -> None:
    a_url, b_url = topology.uis
    async with httpx.AsyncClient(base_url=a_url) as alice_a, httpx.AsyncClient(base_url=b_url) as alice_b, \
            httpx.AsyncClient(base_url=a_url) as bob_a, httpx.AsyncClient(base_url=b_url) as bob_b:
        alice_csrf = await _sign_in(alice_a, "alice")
        alice_b.cookies.set("airlock_session", alice_a.cookies["airlock_session"])
        assert (await alice_b.get("/api/me")).json()["name"] == "alice"  # A's session cookie works on B
        # ... for writes too: the CSRF token A's session holds is checked on B (one secret signs both)
        started = await alice_b.post("/api/runs", json={"workflow": "topology-approval",
                                                        "input": {"customer_id": "cus_ana"}},
                                     headers={"X-CSRF-Token": alice_csrf})
        assert started.status_code == 201, started.text
        run_id = started.json()["run_id"]

        bob_csrf = await _sign_in(bob_a, "bob")
        bob_b.cookies.set("airlock_session", bob_a.cookies["airlock_session"])
        inbox = await _poll(lambda: bob_b.get("/api/approvals"),
                            lambda r: any(i["run_id"] == run_id for i in r.json()["items"]))
        [item] = [i for i in inbox.json()["items"] if i["run_id"] == run_id]
        decided = await bob_a.post(f"/api/approvals/{item['approval_id']}/decision",
                                   json={"decision": "approve", "digest": item["digest"], "comment": "checked"},
                                   headers={"X-CSRF-Token": bob_csrf})
        assert decided.status_code == 200 and decided.json()["status"] == "approved", decided.text

        # B sees what was decided on A: the approval, who decided it, and the run it let finish.
        seen = (await bob_b.get(f"/api/approvals/{item['approval_id']}")).json()
        assert seen["approval"]["status"] == "approved"
        assert [(e["actor"], e["action"]) for e in seen["events"] if e["action"] == "approve"] == [("bob", "approve")]
        run = await _poll(lambda: alice_b.get(f"/api/runs/{run_id}"),
                          lambda r: r.json()["run"]["status"] != "running")
        assert run.json()["run"]["status"] == "completed"

        # Signing out on A ends the session on B too (it lives in the database, not in either process).
        assert (await alice_a.post("/logout", data={"csrf": alice_csrf})).status_code == 303
        assert (await alice_b.get("/api/me")).status_code == 401


def _first_attempts(settings: Settings, run_id: str) -> list[str | None]:
    with Session(make_engine(settings.db_url)) as session:
        rows = session.exec(select(ModelCallRow).where(ModelCallRow.run_id == run_id)
                            .order_by(ModelCallRow.step)).all()
    return [r.attempts[0]["error"] for r in rows]


async def test_breaker_and_daily_cost_cap_hold_across_workers(client: Client, topology: Topology) -> None:
    """One run opens the breaker (three failures of the primary) and one spends the day's cost cap; then
    runs on *both* workers find the breaker open and the cap reached, whichever worker did the opening.

    Once the cooldown (30 s) is over, the next call tries the primary again and its failure opens the breaker
    anew, for every worker: on a slow machine a run may see that one failure, never more. A worker that
    counted alone would fail its first three calls before it skipped any."""
    settings = topology.settings
    opener, spender = [h for kind in ("breaker", "budget") for h in await _start(client, topology, kind, 1)]
    first, spent = await _results([opener, spender])
    assert first.status == "completed" and spent.status == "limit_reached"
    errors = _first_attempts(settings, opener.id)
    assert all("InternalServerError" in (e or "") for e in errors[:3]) and errors[3] == "circuit open: skipped"

    skipped_on: set[int] = set()
    refused_on: set[int] = set()
    for _ in range(5):  # batches until each kind has run on both workers
        breakers, budgets = await _start(client, topology, "breaker", 2), await _start(client, topology, "budget", 2)
        results = await _results(breakers + budgets)
        for handle, result in zip(breakers, results[:2], strict=True):
            assert result.status == "completed"
            errors = _first_attempts(settings, handle.id)
            assert len(errors) == 4 and errors.count("circuit open: skipped") >= 3, (handle.id, errors)
            skipped_on |= await _workers_of(topology, handle, "call_model")
        for handle, result in zip(budgets, results[2:], strict=True):
            assert result.status == "limit_reached" and "daily cost cap of topology-budget" in (result.reason or "")
            assert result.usage.get("model_calls", 0) == 0
            refused_on |= await _workers_of(topology, handle, "call_model")
        if skipped_on == refused_on == {0, 1}:
            break
    assert skipped_on == refused_on == {0, 1}


async def test_no_effect_twice_when_a_worker_is_killed(client: Client, topology: Topology) -> None:
    settings = topology.settings
    before = len(support.list_refunds(settings.db_url))
    handles = await _start(client, topology, "refund", 12)
    await _poll(lambda: asyncio.to_thread(support.list_refunds, settings.db_url),
                lambda rows: len(rows) > before, timeout=60)  # effects under way: kill now
    victim = topology.workers[0]
    os.killpg(victim.pid, signal.SIGKILL)  # no graceful shutdown: whatever it held is left mid-way
    victim.wait(10)
    results = await _results(handles, timeout=120)

    assert [r.status for r in results] == ["completed"] * len(handles)
    assert all([c.outcome for c in r.tool_calls] == ["executed", "executed"] for r in results)
    ids = {h.id for h in handles}
    with Session(make_engine(settings.db_url)) as session:
        executions = [e for e in session.exec(select(ToolExecutionRow).where(ToolExecutionRow.tool == "issue_refund"))
                      if e.run_id in ids]
    assert sorted(e.run_id for e in executions) == sorted(ids)  # one execution record per run
    assert {e.status for e in executions} == {"succeeded"}
    refunds = support.list_refunds(settings.db_url)[before:]
    assert sorted(r.idempotency_key for r in refunds) == sorted(e.idempotency_key for e in executions)
    assert len(refunds) == len(handles)  # each refund once: none lost, none twice
    # Some runs were under way on the killed worker and were finished by the other one.
    moved = [h for h in handles if await _workers_of(topology, h) == {0, 1}]
    assert moved, "no run was in flight on the killed worker"
    for handle in moved:  # ... and the survivor finished each of them
        last = [identity for name, identity in await _identities(handle) if name == "workflow"][-1]
        assert topology.worker_of(last) == 1, handle.id
