"""A lapsed lease kept for an unfinished execution, against a real Temporal server: kept while the holder's
workflow is open, taken over once it is terminated (no retry can come). SQLite store; stand-in OPA and tool
(tests/unit/runtime/test_lease.py has the same attack with a stand-in for Temporal)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from engine.config import Settings
from engine.runtime.activities._actions import ActionActivities
from engine.runtime.activity_io import ExecuteToolInput
from engine.runtime.worker import build_worker
from engine.store.db import make_engine
from engine.store.tables import ActionLockRow
from tests.helpers import refund, start_run, write_spec
from tests.unit.runtime.test_lease import _daily_limit_of_one, _first_attempt_dies_after_starting, _lapse_every_lease
from tests.unit.runtime.test_recheck import RUN, WORLD, _decide, _env, _setup
from tools import support

pytestmark = pytest.mark.integration


async def test_a_kept_lease_waits_for_an_open_run_and_is_taken_once_it_is_terminated(
        client: Client, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr("engine.runtime.activities._actions.KEPT_LEASE_POLL_S", 0.2)
    # The holder's run: a workflow no worker serves, so it stays open until terminated.
    holder = await client.start_workflow("AgentRunWorkflow", id=RUN, task_queue=f"nobody-{uuid.uuid4().hex}",
                                         id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING)
    wf_run = holder.result_run_id
    assert wf_run is not None
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one, workflow_run_id=wf_run)
    a, b = await _decide(acts, 0, "A-1001", wf_run), await _decide(acts, 1, "A-1002", wf_run)
    await _first_attempt_dies_after_starting(acts, a, workflow_run_id=wf_run)
    _lapse_every_lease(acts)
    waiting = asyncio.create_task(_env("exec-1", workflow_run_id=wf_run, client=client).run(
        acts.execute_tool, ExecuteToolInput(run_id=RUN, call=b)))
    try:
        await asyncio.sleep(2.0)
        assert not waiting.done(), "B took the account while A's run could still retry it"
        await holder.terminate(reason="test: the holder's run is closed")
        ran = await asyncio.wait_for(waiting, 15)
    finally:
        waiting.cancel()
    assert ran.ok and WORLD["effects"] == ["A-1002"]  # decided again on fresh facts, then paid


async def test_a_lease_is_given_back_when_execute_tool_gives_up(client: Client, settings: Settings,
                                                                tmp_path: Path, monkeypatch: Any) -> None:
    """execute_tool takes the order's lease, then gives up (a non-retryable failure stands in for its retries
    running out): the run reports the action failed and gives the lease back at once, instead of leaving the
    order blocked until the lease runs out. Real worker, Temporal, OPA and store."""
    support.reset_demo_ledger(settings.db_url)

    async def gives_up(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ApplicationError("the node stayed down through every retry", type="ChainUnavailableError",
                               non_retryable=True)

    monkeypatch.setattr(ActionActivities, "_run_cleared", gives_up)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "20.00")]}, {"content": "done"}])
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"})
        result = await asyncio.wait_for(handle.result(), 60)
    [call] = result.tool_calls
    assert call.outcome == "failed" and "the node stayed down through every retry" in (call.error or "")
    with Session(make_engine(settings.db_url)) as session:
        assert session.exec(select(ActionLockRow)).all() == []
