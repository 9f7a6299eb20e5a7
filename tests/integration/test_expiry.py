"""An approval nobody decides expires: a rejection the model hears about (time-skipping server); a cancelled run's
approvals close with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from engine.config import Settings
from engine.local import processes as stack
from engine.runtime.worker import build_worker
from engine.store import repo
from engine.store.db import make_engine
from tests.helpers import refund, start_run, waiting_refund, write_spec
from tools import support

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_unanswered_approval_expires(settings: Settings, tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "200.00")]}, {"content": "ok"}],
                      approval={"timeout": "3d"})
    async with (await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter,
            test_server_existing_path=stack.find_binary("temporal-test-server")) as env,
                build_worker(env.client, settings)):
        handle = await start_run(env.client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"}, requested_by="alice")
        result = await handle.result()  # the server skips the three days
    [call] = result.tool_calls
    assert call.outcome == "expired"
    assert result.status == "completed"
    with Session(make_engine(settings.db_url)) as session:
        [item] = repo.list_approvals(session, status=None, run_id=handle.id)
    assert item.status == "expired" and item.decided_at is not None
    with Session(support.ledger(settings.db_url)) as session:
        assert support.refunded_total(session, "A-1002") == 0


async def test_a_cancelled_run_closes_its_approvals_and_is_recorded_cancelled(client: Client, settings: Settings,
                                                                              tmp_path: Path) -> None:
    """Cancelling a run's workflow (Temporal's UI, CLI or client) while it waits for people: the approval leaves
    the inbox as expired, the run's record says cancelled, nothing executes, and Temporal shows it cancelled."""
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
        await handle.cancel(reason="ops\x00 cleared\x1b[2J it\u202e")  # worded in Temporal, by anyone who reaches it
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    with Session(make_engine(settings.db_url)) as session:
        [closed] = repo.list_approvals(session, status=None, run_id=handle.id)
        run = repo.get_run(session, run_id=handle.id)
        pending = repo.list_approvals(session, status="pending", run_id=handle.id)
    assert closed.approval_id == item.approval_id and closed.status == "expired" and pending == []
    assert run is not None and run.status == "cancelled"
    assert run.reason == "cancelled: ops? cleared?[2J it?"  # one plain line, storable on PostgreSQL
    assert support.list_refunds(settings.db_url) == []
