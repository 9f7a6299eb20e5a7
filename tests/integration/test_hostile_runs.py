"""Hostile or broken input reaching a live run: it ends, with a reason, and nothing executes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlmodel import Session
from temporalio.client import Client

from engine import compiler
from engine.config import Settings
from engine.models import RunResult
from engine.store import repo
from engine.store.db import make_engine
from engine.worker import build_worker
from tests.helpers import run_to_end, write_spec

pytestmark = pytest.mark.integration
CUSTOMER = {"customer_id": "cus_ana", "message": "please refund"}


@pytest.mark.parametrize("payload", ["hello", [1, 2], 7, None])
async def test_a_payload_that_is_not_an_object_ends_the_run(client: Client, settings: Settings,
                                                           payload: object) -> None:
    async with build_worker(client, settings):
        handle = await client.start_workflow("AgentRunWorkflow", payload, id=f"odd-{uuid.uuid4().hex[:8]}",
                                             task_queue=settings.temporal.task_queue, result_type=RunResult)
        result = await handle.result()
    assert result.status == "failed"
    assert result.reason and result.reason.startswith("malformed run request: expected a JSON object, got ")


async def test_a_bug_inside_the_workflow_fails_the_run_instead_of_looping(
        client: Client, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> dict:
        raise KeyError("refund_id")

    # Workflow-side code the sandbox passes through: a bug there would fail the workflow task, which
    # Temporal retries forever while the run shows "running".
    monkeypatch.setattr(compiler, "initial_state", broken)
    spec = write_spec(tmp_path, [{"content": "never asked"}])
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert (result.status, result.reason) == ("failed", "internal error: KeyError: 'refund_id'")
    with Session(make_engine(settings.db_url)) as session:
        run = repo.get_run(session, run_id=result.run_id)
        timeline = repo.run_timeline(session, run_id=result.run_id)
    assert run is not None and (run.status, run.reason) == ("failed", "internal error: KeyError: 'refund_id'")
    assert timeline[-1].kind == "run" and timeline[-1].summary == "run failed — internal error: KeyError: 'refund_id'"
