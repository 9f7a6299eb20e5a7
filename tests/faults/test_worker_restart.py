"""Kill the worker while a run waits for approval; a new worker finishes it exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from engine.config import Settings
from engine.local import processes as stack
from engine.store.db import Database, make_engine
from engine.store.tables import ToolExecutionRow
from tests.conftest import signing_key
from tests.helpers import ROOT, decide_approval, lead, refund, start_run, wait_for_inbox, write_spec
from tools import support

pytestmark = pytest.mark.faults


def start_worker(settings: Settings, log: Path, extra_env: dict[str, str] | None = None):
    env = {**(extra_env or {}),
        "AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_STATE_DIR": str(settings.state_dir),
        "AIRLOCK_DATABASE_URL": settings.db_url, "AIRLOCK_TEMPORAL__ADDRESS": settings.temporal.address,
        "AIRLOCK_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue, "AIRLOCK_OPA__URL": settings.opa.url,
        "AIRLOCK_LLM__SCRIPTED_URL": settings.llm.scripted_url, "PYTHONUNBUFFERED": "1",
        "AIRLOCK_WORKFLOWS_DIR": str(settings.workflows_dir), "AIRLOCK_AUTH__SIGNING_KEY": signing_key(),
    }
    size = log.stat().st_size if log.exists() else 0
    proc = stack.launch_python(["-m", "engine.cli", "worker"], log, env=env, cwd=ROOT, tethered=True)
    stack.wait_until(lambda: "worker ready" in log.read_text(errors="replace")[size:], "worker", proc, 60, log)
    return proc


async def test_killed_worker_resumes_and_executes_once(client: Client, settings: Settings, tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "120.00")]}, {"content": "done"}])
    log = tmp_path / "worker.log"
    first = start_worker(settings, log)
    second = None
    try:
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"}, requested_by="alice")
        [item] = await wait_for_inbox(settings.db_url, handle.id)
        os.killpg(first.pid, signal.SIGKILL)  # no graceful shutdown
        first.wait(10)
        second = start_worker(settings, log)
        await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id,
                              decision="approve", approver=lead("bob"))
        result = await handle.result()
    finally:
        for proc in (first, second):
            if proc is not None:
                stack.stop_process(proc)
    assert result.status == "completed"
    assert result.tool_calls[0].outcome == "executed"
    with Session(support.ledger(settings.db_url)) as session:
        rows = session.exec(select(support.Refund).where(support.Refund.order_id == "A-1002")).all()
    assert [(r.order_id, str(r.amount)) for r in rows] == [("A-1002", "120.00")]
    with Session(make_engine(settings.db_url)) as session:
        [execution] = session.exec(select(ToolExecutionRow).where(ToolExecutionRow.run_id == handle.id)).all()
    assert (execution.status, execution.attempts) == ("succeeded", 1)


async def test_sigterm_stops_the_worker_cleanly_and_another_finishes_the_run(client: Client, settings: Settings,
                                                                             tmp_path: Path) -> None:
    """What `docker stop` sends: the worker takes no new tasks, finishes, says so and exits 0; the run it served
    waits, and the next worker finishes it exactly once."""
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "130.00")]}, {"content": "done"}])
    log = tmp_path / "worker.log"
    first = start_worker(settings, log, {"AIRLOCK_WORKER_GRACEFUL_SHUTDOWN_S": "5"})
    second = None
    try:
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"}, requested_by="alice")
        [item] = await wait_for_inbox(settings.db_url, handle.id)
        os.kill(first.pid, signal.SIGTERM)
        assert first.wait(30) == 0
        said = log.read_text(errors="replace")
        assert "worker stopping: no new tasks; what it runs may finish for up to 5 s" in said
        assert said.rstrip().endswith("worker stopped")
        second = start_worker(settings, log)
        await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id,
                              decision="approve", approver=lead("bob"))
        result = await handle.result()
    finally:
        for proc in (first, second):
            if proc is not None:
                stack.stop_process(proc)
    assert result.status == "completed" and result.tool_calls[0].outcome == "executed"
    with Session(support.ledger(settings.db_url)) as session:
        rows = session.exec(select(support.Refund).where(support.Refund.order_id == "A-1002")).all()
    assert [str(r.amount) for r in rows] == ["130.00"]
