"""Deciding and executing actions: policy on facts the worker reads, execution on the store's authority."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from engine.boundary import (
    action_digest,
    approval_id,
    idempotency_key,
    with_approvers,
)
from engine.boundary.arguments import validation_problems
from engine.errors import AirlockError, LeaseLostError, ToolArgumentsError
from engine.redact import redact_text
from engine.runtime.activities._base import ActivitiesBase, activity_key, application_error, plain
from engine.runtime.activities._policy_input import changed_facts, effects, policy_input
from engine.runtime.activity_io import (
    UNCHECKED,
    CheckCallInput,
    CheckCallResult,
    EvaluatePolicyInput,
    EvaluatePolicyResult,
    ExecuteToolInput,
    ExecuteToolResult,
    ReleaseLeaseInput,
    ReleaseLeaseResult,
    ValidateCallInput,
)
from engine.runtime.payloads import PolicyDecision, ResolvedRun, ToolCallRecord
from engine.store import authority, decisions, repo
from engine.store.authority import Clearance
from engine.toolkit import ToolContext, ToolDef

HEARTBEAT_EVERY_S = 2.0
# Longer than one attempt of the tool activity (5 min): a dead worker's lease lapses after it.
LOCK_LEASE = timedelta(minutes=6)
LOCK_POLL_S = 0.2
KEPT_LEASE_POLL_S = 2.0  # waiting on an unfinished execution's retry asks Temporal each time
MAX_RESULT_BYTES = 256 * 1024  # a tool result, as the run history keeps it


class ActionActivities(ActivitiesBase):
    """``check_call``, ``evaluate_policy``, ``execute_tool`` and ``release_lease``."""

    @activity.defn(name="check_call")
    async def check_call(self, request: CheckCallInput) -> CheckCallResult:
        """Validate a proposed call's arguments and, when they are valid, decide it: the two steps of one
        call in one local activity (each still recorded: the validation on the timeline, the decision with
        its input). A retry validates again (recorded under the same key) and decides again."""
        call = request.call
        try:
            valid = await self._validated(ValidateCallInput(run_id=request.run_id, tool=call.tool,
                                                            raw_arguments=call.raw_arguments, step=call.step,
                                                            call_id=call.call_id))
        except ApplicationError:
            raise
        except Exception as exc:  # the store: retried; if it stays down, the call is denied as unchecked
            raise ApplicationError(f"the arguments' check could not be recorded: {type(exc).__name__}: "
                                   f"{redact_text(str(exc))}", type=UNCHECKED) from exc
        if not valid.ok:
            return CheckCallResult(valid=valid)
        decided = await self.evaluate_policy(EvaluatePolicyInput(
            run_id=request.run_id, call=call.model_copy(update={"args": valid.args})))
        return CheckCallResult(valid=valid, decided=decided)

    @activity.defn(name="evaluate_policy")
    async def evaluate_policy(self, request: EvaluatePolicyInput) -> EvaluatePolicyResult:
        """Read one call's facts and decide it. The policy input is built here, from the run's record,
        the store and the chain: nothing in it comes from whoever drives the run but the arguments."""
        run, call = await self._run(request.run_id), request.call
        tool = self._tool_of(run, call.tool)
        try:
            args = tool.args_model.model_validate(call.args).model_dump(mode="json")
        except ValidationError as exc:
            raise application_error(ToolArgumentsError(validation_problems(exc, "(arguments)"))) from exc
        key = idempotency_key(run.run_id, call)
        limit = run.spec.limits.max_tool_calls
        known = await self._db(repo.policy_context, run_id=run.run_id, key=key, limit=limit)
        if known.decided >= limit and not known.seen:
            raise ApplicationError(f"run {run.run_id} has had {known.decided} actions decided; the workflow "
                                   f"allows {limit} (limits.max_tool_calls)", type="LimitError", non_retryable=True)
        facts = await self._facts(tool, args, self._context(run, call.step, "")) if tool.facts else {}
        call = call.model_copy(update={"args": args, "facts": facts})
        document = await asyncio.to_thread(self._document, run, call, tool, known.past, known.edits)  # scans
        decision_id = f"{run.run_id}:{activity.info().activity_id}"
        decision, raw, latency, shadow = await self._ask_policy(run, document, decision_id)
        digest = action_digest(call.tool, args, facts, decision.revision)
        approval = approval_id(run.run_id, call) if decision.outcome == "require_approval" else None
        await self._db(decisions.save_decision, decision_id=decision_id, run_id=run.run_id, call_id=call.call_id,
                       package=run.spec.policy, document=document, decision=decision, raw=raw, latency_ms=latency,
                       digest=digest, idempotency_key=key, approval_id=approval, cause=decision_cause(call),
                       shadow=(run.spec.shadow_policy, shadow) if shadow and run.spec.shadow_policy else None)
        activity.logger.info("policy %s for %s: %s %s%s", run.spec.policy, call.call_id, decision.outcome,
                             decision.reasons, _shadow_note(run.spec.shadow_policy, decision, shadow))
        return EvaluatePolicyResult(decision=decision, digest=digest, facts=facts, approval_id=approval)

    def _document(self, run: ResolvedRun, call: ToolCallRecord, tool: ToolDef, past: list[repo.PastCall],
                  edits: list[repo.Edit], approved_by: list[str] | None = None) -> dict[str, Any]:
        """The policy's input for ``call`` (``engine.runtime.activities._policy_input``)."""
        return policy_input(run, call, tool, past, lambda name: self._trust_of(run, name), approved_by, edits)

    def _trust_of(self, run: ResolvedRun, name: str) -> bool | frozenset[str]:
        """What a tool of the run vouches for in its output; a tool the worker cannot find vouches for nothing."""
        try:
            return self._tool_of(run, name).trusted
        except ApplicationError:
            return False

    @activity.defn(name="execute_tool")
    async def execute_tool(self, request: ExecuteToolInput) -> ExecuteToolResult:
        """Run an allowed action once. A retry finds the finished record and returns it."""
        run, call = await self._run(request.run_id), request.call
        tool = self._tool_of(run, call.tool)
        key = idempotency_key(run.run_id, call)
        digest = action_digest(call.tool, call.args, call.facts, call.decision.revision if call.decision else None)
        now = await self._db(repo.standing, run_id=run.run_id, key=key, digest=digest)
        if (done := _finished(now.execution)) is not None:
            return done
        if not now.clearance.allowed:
            return _refused(run, call, now.clearance)
        ctx = self._context(run, call.step, key)
        lock = await asyncio.to_thread(tool.serialize, tool.args_model.model_validate(call.args), ctx) \
            if tool.serialize else None
        if lock is None:
            return await self._run_cleared(tool, run, call, now, digest, ctx, lease=None)
        holder = activity_key()
        await self._take_lock(lock, holder)
        # The wait may have been long: where the action stands is read again under the lease (an approval
        # that expired meanwhile, an approver who lost the role, an attempt that began meanwhile).
        now = await self._db(repo.standing, run_id=run.run_id, key=key, digest=digest)
        if (done := _finished(now.execution)) is not None or not now.clearance.allowed:
            await self._db(authority.release_lock, key=lock, holder=holder)
            return done or _refused(run, call, now.clearance)
        # Released when this attempt ends with an answer; kept when it raises, so its retry (the same
        # holder) resumes under the lease and no other action on the account runs in between: the re-check,
        # the effect and what it reserves (a payment's signed transaction counts toward today's total) are
        # one step for the account. Once the execution began the lease does not lapse while the run is open
        # (``authority.take_lock``); the workflow gives it back if the activity gives up (``release_lease``).
        return await self._run_cleared(tool, run, call, now, digest, ctx, lease=(lock, holder, LOCK_LEASE))

    async def _recheck(self, tool: ToolDef, run: ResolvedRun, call: ToolCallRecord, clearance: Clearance,
                       ctx: ToolContext) -> ExecuteToolResult | None:
        """Read the facts again and, when they (or the policy) changed, let the policy decide again on them.

        Not equality: other payments from the same account move its balance and today's total, and an
        honest payment must still go through. It goes ahead when the fresh decision allows it, or asks no
        more approval than the verified people who approved exactly these arguments give (they are in the
        policy's input as ``approved.by``); a denial, or a need for more or other approval, sends it back
        through the boundary (None: go ahead). The fresh decision is recorded like any other.
        """
        revision = call.decision.revision if call.decision else None
        current = await self._policy.revision()
        facts = await self._facts(tool, call.args, ctx) if tool.facts is not None else call.facts
        past, edits = await self._db(repo.recheck_context, run_id=run.run_id, key=ctx.idempotency_key)
        document = await asyncio.to_thread(self._document, run, call.model_copy(update={"facts": facts}), tool, past,
                                           edits, clearance.approved_by)
        decided = clearance.decision.input.get("run") if clearance.decision else None
        changed = ((["policy revision"] if current != revision else []) + changed_facts(call.facts, facts)
                   # what the run did since (another call of the same turn executed first)
                   + (["run"] if effects(document["run"]) != effects(decided) else []))
        if not changed:
            return None  # the same input as the decision: the same decision
        decision_id = f"{run.run_id}:{activity.info().activity_id}:recheck"
        decision, raw, latency, shadow = await self._ask_policy(run, document, decision_id)
        shown = list(clearance.decision.result.get("reasons") or []) if clearance.decision else []
        problem = await self._db(authority.uncovered, run_id=run.run_id, idempotency_key=ctx.idempotency_key,
                                 approved_by=clearance.approved_by, decision=decision, approved_reasons=shown)
        cause = f"re-check before execution: {', '.join(changed)} changed"
        await self._db(decisions.save_decision, decision_id=decision_id, run_id=run.run_id, call_id=call.call_id,
                       package=run.spec.policy, document=document, decision=decision, raw=raw, latency_ms=latency,
                       digest=action_digest(call.tool, call.args, facts, decision.revision),
                       idempotency_key=ctx.idempotency_key, approval_id=call.approval_id,
                       cause=cause + ("" if problem is None else f"; sent back: {problem}"),
                       shadow=(run.spec.shadow_policy, shadow) if shadow and run.spec.shadow_policy else None)
        activity.logger.info("re-check of %s (%s): %s%s", call.call_id, ", ".join(changed), decision.outcome,
                             "" if problem is None else f", sent back: {problem}")
        if problem is None:
            return None
        reasons = "; ".join(decision.reasons)
        return ExecuteToolResult(ok=False, stale=True, changed=changed,
                                 error=f"{cause}, and the policy decided again: {problem}"
                                       + (f" ({reasons})" if reasons else ""))

    async def _ask_policy(self, run: ResolvedRun, document: dict[str, Any],
                          decision_id: str) -> tuple[PolicyDecision, Any, float, PolicyDecision | None]:
        """OPA's decision on ``document``, with the workflow's approver role filled in and its id set; and,
        for a workflow with a ``shadow_policy``, that package's decision on the same input, asked at the same
        time (recorded only: what it says, or its failing, never changes the decision)."""
        asked = [self._policy.evaluate(run.spec.policy, document)]
        if run.spec.shadow_policy:
            asked.append(self._policy.evaluate(run.spec.shadow_policy, document))
        answers = await asyncio.gather(*asked)
        decision, raw, latency = answers[0]
        decision = with_approvers(decision, run.spec.approval.approver_role)
        shadow = with_approvers(answers[1][0], run.spec.approval.approver_role) if len(answers) > 1 else None
        return decision.model_copy(update={"decision_id": decision_id}), raw, latency, shadow

    def _shown_error(self, exc: Exception) -> str:
        """A tool's failure as the record, the model and people see it: no keys from URLs in its text
        (a tool's own HTTP client may quote the URL it called)."""
        return redact_text(f"{type(exc).__name__}: {exc}", self._chain.settings.rpc_url if self._chain else None)

    @activity.defn(name="release_lease")
    async def release_lease(self, request: ReleaseLeaseInput) -> ReleaseLeaseResult:
        """Give back the lease an ``execute_tool`` activity of this run held when it gave up (retries
        exhausted): no retry of it will come, and other actions on the account need not wait for the run
        to end. Only the run that scheduled that activity can."""
        await self._run(request.run_id)  # scheduled by this run's own workflow, or refused
        holder = f"{activity.info().workflow_run_id}:{request.activity_id}"
        if released := await self._db(authority.release_held, holder=holder, ended=request.ended):
            activity.logger.warning("%s gave up; %s %d lease(s) it held", request.activity_id,
                                    "released" if request.ended else "unbound (they lapse at their time)", released)
        return ReleaseLeaseResult(released=released)

    async def _workflow_open(self, run_id: str, workflow_run_id: str | None) -> bool:
        """Whether a run's workflow may still retry its activities: Temporal's answer, open when unsure."""
        try:
            described = await activity.client().get_workflow_handle(run_id, run_id=workflow_run_id).describe()
        except RPCError as exc:
            # NOT_FOUND: gone past retention, so closed (not the namespace: this activity's own worker polls
            # it). Anything else (Temporal unreachable, no permission): unsure, so it stays open.
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            activity.logger.warning("cannot tell whether run %s is still open (%s: %s); waiting for it", run_id,
                                    exc.status.name, exc.message)
            return True
        return described.status == WorkflowExecutionStatus.RUNNING

    async def _take_lock(self, lock: str, holder: str) -> None:
        """Wait (heartbeating) until this activity holds the lease on what its action touches.

        A lapsed lease kept for an unfinished execution is taken over once Temporal says its run is
        closed; until then this waits for that execution's retry (its worker is gone, or all of them are).
        """
        take_over = None
        while not (answer := await self._db(authority.take_lock, key=lock, holder=holder, lease=LOCK_LEASE,
                                            take_over=take_over)).taken:
            activity.heartbeat()
            kept = answer.kept_for
            if kept is not None and not await self._workflow_open(kept.run_id, kept.workflow_run_id):
                activity.logger.warning("taking over the lease on %s: run %s, whose execution began under it, "
                                        "is closed", lock, kept.run_id)
                take_over = kept.holder
                continue
            await asyncio.sleep(LOCK_POLL_S if kept is None else KEPT_LEASE_POLL_S)

    async def _run_cleared(self, tool: ToolDef, run: ResolvedRun, call: ToolCallRecord, now: repo.Standing,
                           digest: str, ctx: ToolContext, *,
                           lease: tuple[str, str, timedelta] | None) -> ExecuteToolResult:
        """Re-check, then run the tool once (under ``lease``: lock key, holder, duration) and record how it
        ended. ``now``: where the action stood, read under the lease. The lease is given back with every
        answer (with the record of how the action ended, in one transaction) and kept when this raises."""
        run_id, key = run.run_id, ctx.idempotency_key
        release = lease[:2] if lease is not None else None
        # Re-check right before acting. Skipped on a retry of an execution that already began: its effect
        # may be under way (a transaction sent), and the tool resumes it instead of redoing it; the lease it
        # began under kept every other action on the account out since.
        if now.execution is None and (stale := await self._recheck(tool, run, call, now.clearance, ctx)) is not None:
            return await self._released(release, stale)
        try:
            await self._db(repo.start_execution, key=key, run_id=run_id, call_id=call.call_id,
                           tool=call.tool, args=call.args, digest=digest, lease=lease)
        except LeaseLostError as exc:  # nothing began: the retry takes the lease and decides again
            raise application_error(exc) from exc
        except AirlockError as exc:
            return await self._released(release, ExecuteToolResult(ok=False, refused=True,
                                                                   error=f"not authorised: {exc}"))
        started = time.perf_counter()
        try:
            result = plain(await _heartbeating(tool.func, tool.args_model.model_validate(call.args), ctx))
            ok, error = True, None
            if (size := len(json.dumps(result, default=str).encode())) > MAX_RESULT_BYTES:
                # The effect happened; what comes back must still fit the run's history.
                activity.logger.warning("%s of %s returned %d bytes; keeping a note instead", call.tool, run_id, size)
                result = {"result_too_large": f"{size} bytes; at most {MAX_RESULT_BYTES} are kept"}
        except AirlockError as exc:
            if exc.retryable:  # the node or a store is down: Temporal retries with backoff; the tool resumes
                raise application_error(exc) from exc
            result, ok, error = None, False, self._shown_error(exc)
        except Exception as exc:  # noqa: BLE001 - a tool's own failure is reported to the model, not hidden
            result, ok, error = None, False, self._shown_error(exc)
        await self._db(repo.finish_execution, key=key, ok=ok, result=result, error=error,
                       latency_ms=round((time.perf_counter() - started) * 1000, 2), release=release)
        return ExecuteToolResult(ok=ok, result=result, error=error)

    async def _released(self, lease: tuple[str, str] | None, answer: ExecuteToolResult) -> ExecuteToolResult:
        """``answer``, once the lease (lock key, holder) it was reached under is given back."""
        if lease is not None:
            await self._db(authority.release_lock, key=lease[0], holder=lease[1])
        return answer


async def _heartbeating(fn: Any, *args: Any) -> Any:
    """Run a blocking tool in a thread, heartbeating so a dead worker's attempt is retried within seconds."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_S)
        if done:
            return task.result()
        activity.heartbeat()


def _refused(run: ResolvedRun, call: ToolCallRecord, clearance: Clearance) -> ExecuteToolResult:
    """The answer when the store holds no authority for exactly this action: it never ran."""
    activity.logger.warning("refused to execute %s of %s: %s", call.tool, run.run_id, clearance.reason)
    return ExecuteToolResult(ok=False, refused=True, error=f"not authorised: {clearance.reason}")


def decision_cause(call: ToolCallRecord) -> str:
    """Why the boundary decides this call (now): first proposed, edited, or decided again after a re-check."""
    causes = []
    if call.revision:
        causes.append(f"edited by {call.edited_by or 'someone'} (revision {call.revision})")
    if call.rechecks:
        causes.append(f"decided again ({call.rechecks}): {call.recheck_reason or 'the re-check sent it back'}")
    return "; ".join(causes) or "proposed"


def _finished(row: Any) -> ExecuteToolResult | None:
    if row is None or row.status == "started":
        return None
    return ExecuteToolResult(ok=row.status == "succeeded", result=row.result, error=row.error, replayed=True)


def _shadow_note(package: str | None, decision: PolicyDecision, shadow: PolicyDecision | None) -> str:
    """For the log: what the shadow policy said, when it disagrees."""
    if shadow is None or shadow.outcome == decision.outcome:
        return ""
    return f"; shadow policy {package} would have: {shadow.outcome} {shadow.reasons}"
