"""``execute_tool`` runs only what the store authorised, and never repeats an effect (real OPA and database)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from engine.adapters.llm import ModelClient
from engine.boundary import action_digest, policy_document
from engine.boundary.identity import Verifier
from engine.boundary.policy import OpaPolicy
from engine.config import LlmSettings, Settings
from engine.runtime.activities import AirlockActivities
from engine.runtime.activity_io import ExecuteToolInput
from engine.runtime.definitions import DefinitionRegistry
from engine.runtime.payloads import PolicyDecision, ResolvedRun, ToolCallRecord
from engine.spec import load_spec
from engine.store import decisions, repo
from engine.store.db import Database, make_engine
from engine.store.tables import ToolExecutionRow
from engine.toolkit import ToolContext
from tests.helpers import ROOT
from tools import support

pytestmark = pytest.mark.integration
ARGS = {"order_id": "A-1002", "amount": "60.00", "reason": "late delivery"}
KEY = "run-1:1:0"


def _activities(settings: Settings) -> AirlockActivities:
    return AirlockActivities(db=Database(settings.db_url),
                             policy=OpaPolicy(settings.opa), model=ModelClient(LlmSettings()),
                             registry=DefinitionRegistry(settings.workflows_dir, ROOT),
                             verifier=Verifier.from_settings(settings))


def _env(workflow_id: str = "run-1", workflow_run_id: str = "wr-1") -> ActivityEnvironment:
    """An activity environment that looks like an activity scheduled by ``workflow_id``'s run."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id, workflow_run_id=workflow_run_id)
    return env


async def _recorded(settings: Settings, outcome: str = "allow", **args: Any) -> ExecuteToolInput:
    """A resolved run and a decision on its one refund, as the worker records them; the call to execute."""
    spec = load_spec(ROOT / "workflows/support_refund.yaml", project_dir=ROOT)
    revision = await OpaPolicy(settings.opa).revision()
    decision = PolicyDecision(allow=outcome == "allow", outcome=outcome, revision=revision)  # type: ignore[arg-type]
    facts = support.refund_facts(support.RefundArgs(**ARGS), _ctx(settings))
    call = ToolCallRecord(call_id="call_1_0", step=1, index=0, tool="issue_refund", outcome="allowed",
                          args={**ARGS, **args}, facts=facts, decision=decision)
    digest = action_digest(call.tool, ARGS, facts, revision)
    run = ResolvedRun(run_id="run-1", spec=spec, requested_by="alice", tenant="default", workflow_run_id="wr-1")
    with Session(make_engine(settings.db_url)) as session:
        repo.register_run(session, run=run)
        decisions.save_decision(session, decision_id="run-1:1", run_id="run-1", call_id="call_1_0",
                           package=spec.policy,
                           document=policy_document(run, call, consequential=True, previous=[], provenance={}),
                           decision=decision, raw=None, latency_ms=1.0, digest=digest, idempotency_key=KEY,
                           approval_id=None, cause="proposed")
    return ExecuteToolInput(run_id="run-1", call=call)


def _ctx(settings: Settings) -> ToolContext:
    return ToolContext(run_id="run-1", step=1, idempotency_key=KEY, database_url=settings.db_url,
                       requested_by="alice", tenant="default")


def _refunds(db_url: str) -> list[str]:
    with Session(support.ledger(db_url)) as session:
        return [str(r.amount) for r in session.exec(select(support.Refund)).all()]


async def test_retried_execution_returns_recorded_result(settings: Settings) -> None:
    support.reset_demo_ledger(settings.db_url)
    activities, request = _activities(settings), await _recorded(settings)
    first = await _env().run(activities.execute_tool, request)
    again = await _env().run(activities.execute_tool, request)
    assert first.ok and not first.replayed
    assert again.replayed and again.result == first.result
    assert _refunds(settings.db_url) == ["60.00"]


async def test_crash_after_effect_before_record_does_not_pay_twice(settings: Settings) -> None:
    support.reset_demo_ledger(settings.db_url)
    activities, request = _activities(settings), await _recorded(settings)
    digest = action_digest("issue_refund", ARGS, request.call.facts, request.call.decision.revision)  # type: ignore[union-attr]
    # The first attempt paid, then the worker died before recording the end.
    with Session(make_engine(settings.db_url)) as session:
        repo.start_execution(session, key=KEY, run_id="run-1", call_id="call_1_0", tool="issue_refund", args={},
                             digest=digest)
    support.issue_refund(support.RefundArgs(**ARGS), _ctx(settings))
    retried = await _env().run(activities.execute_tool, request)
    assert retried.ok and retried.result["amount"] == "60.00"
    assert _refunds(settings.db_url) == ["60.00"]
    with Session(make_engine(settings.db_url)) as session:
        row = session.get(ToolExecutionRow, KEY)
        assert row is not None and (row.status, row.attempts) == ("succeeded", 2)


async def test_execution_needs_exactly_the_recorded_decision(settings: Settings) -> None:
    support.reset_demo_ledger(settings.db_url)
    activities = _activities(settings)
    bigger = await _recorded(settings, amount="300.00")  # other arguments than the decision's
    refused = await _env().run(activities.execute_tool, bigger)
    assert refused.refused and "no policy decision on record" in (refused.error or "")
    denied = await _recorded(settings, outcome="deny")
    assert (await _env().run(activities.execute_tool, denied)).refused
    assert _refunds(settings.db_url) == []


async def test_an_action_cannot_resume_what_another_action_started(settings: Settings) -> None:
    """A key whose execution began for another action (say a read that failed) does not skip the checks."""
    support.reset_demo_ledger(settings.db_url)
    activities, request = _activities(settings), await _recorded(settings)
    with Session(make_engine(settings.db_url)) as session:
        repo.start_execution(session, key=KEY, run_id="run-1", call_id="call_1_0", tool="lookup_order", args={},
                             digest="sha256:some-other-action")
    ran = await _env().run(activities.execute_tool, request)
    assert ran.refused and "another action (lookup_order" in (ran.error or "")
    assert _refunds(settings.db_url) == []


async def test_only_the_run_that_resolved_it_may_act_for_it(settings: Settings) -> None:
    support.reset_demo_ledger(settings.db_url)
    activities, request = _activities(settings), await _recorded(settings)
    for env in (_env(workflow_id="rogue"), _env(workflow_run_id="a-later-run-with-the-same-id")):
        with pytest.raises(ApplicationError, match="was not scheduled by run run-1"):
            await env.run(activities.execute_tool, request)
    assert _refunds(settings.db_url) == []
