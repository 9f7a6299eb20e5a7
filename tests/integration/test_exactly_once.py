"""``execute_tool`` never repeats an effect, whatever retries it sees (real database)."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from engine.activities import AirlockActivities
from engine.config import LlmSettings, OpaSettings
from engine.llm import ModelClient
from engine.models import ExecuteToolInput, ToolCallRecord
from engine.policy import PolicyEngine
from engine.store import repo
from engine.store.db import make_engine
from engine.store.tables import ToolExecutionRow
from engine.toolkit import ToolContext
from tools import support

pytestmark = pytest.mark.integration


def _activities(db_url: str) -> AirlockActivities:
    return AirlockActivities(engine=make_engine(db_url), database_url=db_url,
                             policy=PolicyEngine(OpaSettings()), model=ModelClient(LlmSettings()))


def _input(key: str) -> ExecuteToolInput:
    call = ToolCallRecord(call_id="call_1_0", step=1, index=0, tool="issue_refund", outcome="allowed",
                          args={"order_id": "A-1002", "amount": "60.00", "reason": "late delivery"})
    return ExecuteToolInput(run_id="run-1", call=call, tool_import_path="tools.support:issue_refund",
                            idempotency_key=key, requested_by="alice", tenant="default")


def _refunds(db_url: str) -> list[str]:
    with Session(support.ledger(db_url)) as session:
        return [str(r.amount) for r in session.exec(select(support.Refund)).all()]


async def test_retried_execution_returns_recorded_result(db_url: str) -> None:
    support.reset_demo_ledger(db_url)
    activities, env = _activities(db_url), ActivityEnvironment()
    first = await env.run(activities.execute_tool, _input("run-1:1:0"))
    again = await env.run(activities.execute_tool, _input("run-1:1:0"))
    assert first.ok and not first.replayed
    assert again.replayed and again.result == first.result
    assert _refunds(db_url) == ["60.00"]


async def test_crash_after_effect_before_record_does_not_pay_twice(db_url: str) -> None:
    support.reset_demo_ledger(db_url)
    activities = _activities(db_url)
    # The first attempt paid, then the worker died before recording the end.
    with Session(make_engine(db_url)) as session:
        repo.start_execution(session, key="run-1:1:0", run_id="run-1", call_id="call_1_0", tool="issue_refund",
                             args={})
    support.issue_refund(support.RefundArgs(order_id="A-1002", amount="60.00", reason="late delivery"),
                         ToolContext(run_id="run-1", step=1, idempotency_key="run-1:1:0", database_url=db_url,
                                     requested_by="alice", tenant="default"))
    retried = await ActivityEnvironment().run(activities.execute_tool, _input("run-1:1:0"))
    assert retried.ok and retried.result["amount"] == "60.00"
    assert _refunds(db_url) == ["60.00"]
    with Session(make_engine(db_url)) as session:
        row = session.get(ToolExecutionRow, "run-1:1:0")
        assert row is not None and (row.status, row.attempts) == ("succeeded", 2)
