"""Running a dataset: each case a real run through Temporal and the worker, scored, and recorded.

Every case starts a run of the derived definition (``engine.evals.derive``) as
the requester, pinned to its hash, and waits for it to end. When the run opens
an approval, the eval's approver decides it the way the case says
(``approve:``, default ``reject``), signed like any person's decision and
checked by the run with the same rules; with no approver the case ends there,
failed, and the approval is left in the inbox for a person.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from engine.boundary.identity import Authority
from engine.errors import AirlockError
from engine.evals.dataset import EvalCase, LoadedDataset
from engine.evals.derive import Derived
from engine.evals.scoring import CaseScore, Observation, ObservedCall, observe, score, summarise
from engine.runtime import runs
from engine.store import repo
from engine.store.db import Database
from engine.store.evals import EvalCaseResult, EvalRecord, record_eval
from engine.store.repo import ApprovalView
from engine.store.users import Approver

POLL_S = 0.2  # how often a waiting case looks for approvals to decide


@dataclass(frozen=True)
class EvalContext:
    """What every case of an eval runs with: services, who starts and who approves, where."""

    client: Client
    db: Database
    authority: Authority
    task_queue: str
    requester: str
    approver: Approver | None = None
    tenant: str = "default"
    case_timeout_s: float = 300.0
    concurrency: int = 1


@dataclass(frozen=True)
class EvalOutcome:
    """One version's scores, as recorded."""

    record: EvalRecord
    scores: list[CaseScore]


async def run_dataset(ctx: EvalContext, dataset: LoadedDataset, derived: Derived, *, label: str,
                      comparison: str | None = None,
                      on_case: Callable[[CaseScore], None] | None = None) -> EvalOutcome:
    """Run every case against ``derived``, score each, and record the eval run."""
    started = datetime.now(UTC)
    gate = asyncio.Semaphore(max(1, ctx.concurrency))

    async def one(case: EvalCase) -> CaseScore:
        async with gate:
            scored = score(case.id, case.expect, await _run_case(ctx, derived, case))
        if on_case is not None:
            on_case(scored)
        return scored

    scores = list(await asyncio.gather(*(one(c) for c in dataset.data.cases)))
    figures = summarise(scores)
    record = EvalRecord(
        eval_id=f"eval-{uuid.uuid4().hex[:12]}", comparison=comparison, label=label, dataset=dataset.name,
        dataset_hash=dataset.sha256, workflow=derived.base.name, version=derived.base.version,
        definition_hash=derived.base.definition_hash, run_workflow=derived.spec.name,
        run_definition_hash=derived.spec.definition_hash, tenant=ctx.tenant, started_by=ctx.requester,
        cases=figures.cases, passed=figures.passed, success_rate=figures.success_rate, cost=figures.cost,
        cost_per_success=figures.cost_per_success, escalations=figures.escalations, started_at=started,
        finished_at=datetime.now(UTC), results=[_result(s) for s in scores])
    ctx.db.call(record_eval, record=record)
    return EvalOutcome(record, scores)


def _result(scored: CaseScore) -> EvalCaseResult:
    seen = scored.observation
    return EvalCaseResult(case_id=scored.case_id, run_id=seen.run_id, passed=scored.passed, failures=scored.failures,
                          status=seen.status, reason=seen.reason, cost=seen.cost, latency_ms=seen.latency_ms,
                          steps=seen.steps, escalations=seen.escalations)


async def _run_case(ctx: EvalContext, derived: Derived, case: EvalCase) -> Observation:
    """Start the case's run, decide its approvals as the case says, and observe how it ended."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        handle = await runs.start_run(ctx.client, ctx.authority, task_queue=ctx.task_queue, workflow=derived.spec,
                                      run_input=case.run_input(), requested_by=ctx.requester, tenant=ctx.tenant)
    except (AirlockError, RPCError) as exc:
        return Observation(status="not_started", reason=f"the run could not start: {exc}")
    result = asyncio.ensure_future(handle.result())
    decided: set[str] = set()
    try:
        while not result.done():
            await asyncio.wait([result], timeout=POLL_S)
            if result.done():
                break
            if loop.time() - began > ctx.case_timeout_s:
                return _unfinished(handle.id, "running", f"did not end within {ctx.case_timeout_s:g} s", [],
                                   (loop.time() - began) * 1000)
            waiting = [a for a in ctx.db.call(repo.list_approvals, run_id=handle.id) if a.approval_id not in decided]
            problem = (f"waits for approval {waiting[0].approval_id} and the eval has no approver (--approver); "
                       "it is left in the inbox") if waiting and ctx.approver is None else None
            for approval in waiting if problem is None else []:
                decided.add(approval.approval_id)
                problem = await _decide(ctx, case, approval.approval_id)
                if problem is not None:
                    break
            if problem is not None:
                return _unfinished(handle.id, "waiting_approval", problem, waiting, (loop.time() - began) * 1000)
        return observe(result.result(), (loop.time() - began) * 1000)
    except WorkflowFailureError as exc:
        return Observation(run_id=handle.id, status="failed", reason=f"the workflow failed: {exc.cause or exc}",
                           latency_ms=round((loop.time() - began) * 1000, 1))
    finally:
        result.cancel()


async def _decide(ctx: EvalContext, case: EvalCase, approval_id: str) -> str | None:
    """The eval's approver decides one approval as the case says; why the run refused it, or None."""
    assert ctx.approver is not None
    comment = f"airlock eval: case {case.id} says {case.approve}"
    try:
        await runs.decide_approval(ctx.client, ctx.db, ctx.authority, approval_id=approval_id,
                                   decision=case.approve, approver=ctx.approver, comment=comment,
                                   source="airlock eval")
    except AirlockError as exc:  # refused (the approver's role or tenant): the action stays in the inbox
        return f"{ctx.approver.name} could not {case.approve} {approval_id}: {exc}; it is left in the inbox"
    return None


def _unfinished(run_id: str, status: str, reason: str, waiting: list[ApprovalView], latency_ms: float) -> Observation:
    """A run the eval stopped waiting for; the calls it knows of are those waiting for people."""
    calls = [ObservedCall(tool=a.tool, decision="require_approval", outcome="pending_approval") for a in waiting]
    return Observation(run_id=run_id, status=status, reason=reason, calls=calls, latency_ms=round(latency_ms, 1))
