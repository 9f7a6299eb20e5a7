"""Short steps run as local activities (engine.runtime.state.act_here), against a real Temporal server.

A step that gives up reads the same to its caller whichever way it ran (``failure_reason``); a start step
retried past the local retry threshold comes back under a new activity id and still starts the run once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from engine.config import Settings
from engine.errors import ChainUnavailableError
from engine.runtime.worker import build_worker
from engine.store import repo
from tests.helpers import start_run, write_spec

with workflow.unsafe.imports_passed_through():
    from engine.runtime import state

pytestmark = pytest.mark.integration


class Probe(BaseModel):
    fail: str  # "fatal" | "retried" | "slow"


class Outcome(BaseModel):
    ok: bool


@activity.defn(name="probe_step")
async def probe_step(probe: Probe) -> Outcome:
    if probe.fail == "fatal":
        raise ApplicationError("the input is wrong", type="InputError", non_retryable=True)
    if probe.fail == "retried":
        raise ApplicationError("the store is down", type="StoreDown")
    await asyncio.sleep(5)
    return Outcome(ok=True)


@workflow.defn(name="ProbeWorkflow", sandboxed=False)
class ProbeWorkflow:
    @workflow.run
    async def run(self, fail: str, local: bool) -> str:
        opts = {"start_to_close_timeout": timedelta(seconds=1),
                "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=2)}
        call = state.act_here if local else state.act
        try:
            await call(probe_step, Probe(fail=fail), opts)
        except ActivityError as exc:
            return state.failure_reason(exc)
        return "ok"


@pytest.mark.parametrize("fail", ["fatal", "retried", "slow"])
async def test_a_local_step_fails_in_the_same_words_as_an_activity(client: Client, fail: str) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter

    converted = Client(client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter)
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    async with Worker(converted, task_queue=queue, workflows=[ProbeWorkflow], activities=[probe_step]):
        said = [await converted.execute_workflow(ProbeWorkflow.run, args=[fail, local], id=uuid.uuid4().hex,
                                                 task_queue=queue) for local in (False, True)]
    assert said[0] == said[1], said
    assert said[0] == {"fatal": "probe_step failed: InputError: the input is wrong",
                       "retried": "probe_step failed: StoreDown: the store is down",
                       "slow": "probe_step failed: activity StartToClose timeout"}[fail]


async def test_a_start_retried_past_the_local_threshold_starts_the_run_once(
        client: Client, settings: Settings, tmp_path: Any, monkeypatch: Any) -> None:
    """The store fails after the start assertion was used; the retry waits past the local retry threshold
    and comes back as a new local activity, with a new id: the assertion it already used still counts for
    this workflow run, and the run completes."""
    monkeypatch.setattr(state, "LOCAL_RETRY_THRESHOLD", timedelta(milliseconds=500))
    real, failures = repo.register_run, []

    def flaky(session: Any, **kwargs: Any) -> None:
        if len(failures) < 2:
            failures.append(1)
            raise ChainUnavailableError("the store went away for a moment")
        real(session, **kwargs)

    monkeypatch.setattr(repo, "register_run", flaky)
    spec = write_spec(tmp_path, [{"content": "done"}])
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"})
        result = await asyncio.wait_for(handle.result(), 60)
    assert len(failures) == 2  # both retries got as far as recording the run: the assertion still counted
    assert result.status == "completed", result.reason
