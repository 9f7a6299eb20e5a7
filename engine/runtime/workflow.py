"""The Temporal workflow: one durable run of an agent graph.

The graph runs inside the workflow through ``temporalio-langgraph``. When the
boundary needs people, the graph interrupts; the workflow records the inbox
rows, exposes the pending actions through ``get_pending_actions`` and waits
durably for decisions or the approval timeout, then resumes the graph with the
verdicts.

A decision arrives as an update (``decide_approval``, ``edit_action``), whose
answer the person gets at once, or — when no worker took the update in time —
as a signal carrying the same signed payload (``deliver_decision``,
``deliver_edit``), which Temporal records durably even with no worker
polling. Both go through the same checks, the same verification of the person
by the worker and the same rules; a delivery is applied once by its key (the
hash of the whole payload, the assertion spelled canonically) however many
ways it arrives, its assertion is good for one use, each person counts once,
and each delivery, by update or by signal, ends with ``settle_decision``
recording what became of it on the decision's record (the door's queued one,
or the one the worker made when it took the decision).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command
    from pydantic import ValidationError
    from temporalio.langgraph import graph as registered_graph

    from engine.boundary.people import decision_refusal, rejection_problem
    from engine.runtime import contract
    from engine.runtime.activity_io import (
        CloseApprovalInput,
        GuardInputInput,
        OpenApprovalsInput,
        RecordRunInput,
        ResolveRunInput,
        SettleDecisionInput,
        ValidateCallInput,
        VerifiedPerson,
        VerifyPersonInput,
    )
    from engine.runtime.compiler import graph_name, initial_state
    from engine.runtime.payloads import (
        ApprovalDecisionInput,
        ApprovalDecisionResult,
        ApprovalEditInput,
        ApprovalVote,
        PendingAction,
        ResolvedRun,
        RunProgress,
        RunRequest,
        RunResult,
        RunStatus,
        ToolCallRecord,
        Verdict,
        WaitingApproval,
        delivery_key,
    )
    from engine.runtime.state import failure_reason

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

_RECORD_TIMEOUT = timedelta(seconds=30)  # start_to_close of the workflow's own activities
# Since this patch every delivery settles its decision's record itself (the update too, not only a signal).
_SETTLE_EVERY_DELIVERY = "settle-every-delivery"


def user_message(run_input: dict[str, Any]) -> str:
    """The first user turn: ``input.message`` when given, else the input as JSON."""
    message = run_input.get("message")
    return message if isinstance(message, str) else json.dumps(run_input, sort_keys=True)


class _Outcome(NamedTuple):
    """What became of one decision: applied (``detail``: the approval's status then) or refused (why)."""

    applied: bool
    detail: str | None


def _shown_result(result: ApprovalDecisionResult) -> str:
    if result.status == "pending":
        return f"pending: {result.approvals} of {result.needed} approvals"
    return result.status


@workflow.defn(name="AgentRunWorkflow")
class AgentRunWorkflow:
    """Runs one agent workflow spec to completion."""

    def __init__(self) -> None:
        self._request: ResolvedRun | None = None
        self._status: RunStatus = "running"
        self._pending: dict[str, PendingAction] = {}
        self._progress = RunProgress()
        self._taken: set[str] = set()  # delivery keys that reached the run (by update or signal)
        self._outcomes: dict[str, _Outcome] = {}  # ... and what became of each, once known
        self._settled: set[str] = set()  # ... and whose outcome is recorded on the decision's record

    @workflow.run
    async def run(self, payload: Any) -> RunResult:
        # The payload is checked here, not by the converter: a malformed request ends the run with a
        # reason instead of failing its workflow task forever.
        if not isinstance(payload, dict):
            return self._refused(workflow.info().workflow_id, "?", "malformed run request: expected a JSON "
                                 f"object, got {type(payload).__name__}")
        try:
            asked = RunRequest.model_validate(payload)
        except ValidationError as exc:
            return self._refused(str(payload.get("run_id") or workflow.info().workflow_id)[:200],
                                 str(payload.get("workflow") or "?")[:200], f"malformed run request: {exc}")
        try:
            resolved = await workflow.execute_activity(contract.resolve_run, ResolveRunInput(request=asked),
                                                       start_to_close_timeout=_RECORD_TIMEOUT)
        except ActivityError as exc:  # not authenticated, or no such definition: nothing ran
            return self._refused(asked.run_id, asked.workflow, f"refused: {failure_reason(exc)}")
        except Exception as exc:  # noqa: BLE001 - e.g. a definition this workflow cannot decode
            return self._refused(asked.run_id, asked.workflow, f"refused: {type(exc).__name__}: {exc}"[:2000])
        request = self._request = resolved.run
        try:
            result = await self._drive(request)
        except Exception as exc:  # noqa: BLE001 - a bug, or something validation missed
            # Raising here would fail the workflow task, and Temporal retries a failed task forever while
            # the run looks alive. End the run instead, with the reason, and close what waits for people.
            reason = f"internal error: {type(exc).__name__}: {exc}"[:2000]
            workflow.logger.error("run %s failed: %s", request.run_id, reason)
            for pending in self._pending.values():
                if pending.status == "pending":
                    pending.status, pending.reason = "expired", f"the run failed ({reason})"
                    await self._close(pending)
            result = RunResult(run_id=request.run_id, workflow=request.spec.name, version=request.spec.version,
                               status="failed", reason=reason)
        self._status = result.status
        self.note_progress(activity="finished", usage=result.usage)
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._record(RecordRunInput(run_id=request.run_id, status=result.status, result=result))
        return result

    async def _drive(self, request: ResolvedRun) -> RunResult:
        """Run the graph to its end, pausing for people at each interrupt."""
        app = registered_graph(graph_name(request.spec)).compile(checkpointer=InMemorySaver())
        config: RunnableConfig = {"configurable": {"thread_id": request.run_id}}
        try:
            message = user_message(request.input)
            if request.spec.input_guard is not None:  # only runs of guarded workflows schedule this activity
                self.note_progress(activity="checking the input")
                guarded = await workflow.execute_activity(
                    contract.guard_input, GuardInputInput(run_id=request.run_id, message=message),
                    start_to_close_timeout=_RECORD_TIMEOUT)
                message = guarded.message
            state = await app.ainvoke(initial_state(request.model_dump(mode="json"), request.spec, message), config)
            while "__interrupt__" in state:
                actions = [ToolCallRecord.model_validate(a) for a in state["__interrupt__"][0].value["actions"]]
                verdicts = await self._wait_for_people(request, actions)
                state = await app.ainvoke(Command(resume=verdicts), config)
        except ActivityError as exc:
            # An activity gave up (a model that refuses our request, a store that stays down): end the
            # run cleanly with what the graph had, so the index and the caller see why.
            snapshot = await app.aget_state(config)
            state = {**snapshot.values, "status": "failed", "reason": failure_reason(exc)}
        calls = [ToolCallRecord.model_validate(c) for c in state.get("calls") or []]
        calls += [ToolCallRecord.model_validate(c) for c in state.get("proposed") or []]
        return RunResult(run_id=request.run_id, workflow=request.spec.name, version=request.spec.version,
                         status=state.get("status") or "failed", reason=state.get("reason"),
                         output=state.get("output"), steps=state.get("step", 0), tool_calls=calls,
                         usage=state.get("usage") or {}, structured=state.get("structured"))

    def _refused(self, run_id: str, name: str, reason: str) -> RunResult:
        self._status = "failed"
        self.note_progress(activity="refused")
        workflow.logger.warning("run %s refused: %s", run_id, reason)
        return RunResult(run_id=run_id, workflow=name, version=0, status="failed", reason=reason)

    async def _wait_for_people(self, request: ResolvedRun, actions: list[ToolCallRecord]) -> dict[str, dict[str, Any]]:
        expires_at = workflow.now() + request.spec.approval.timeout
        self._pending = {a.approval_id or "": PendingAction(approval_id=a.approval_id or "", run_id=request.run_id,
                                                           call=a, requested_by=request.requested_by,
                                                           expires_at=expires_at) for a in actions}
        self._status = "waiting_approval"
        self.note_progress(activity="waiting for approval")
        await workflow.execute_activity(
            contract.open_approvals, OpenApprovalsInput(run_id=request.run_id, expires_at=expires_at, calls=actions),
            start_to_close_timeout=_RECORD_TIMEOUT)
        try:
            await workflow.wait_condition(lambda: all(p.status != "pending" for p in self._pending.values()),
                                          timeout=expires_at - workflow.now())
        except TimeoutError:
            for pending in self._pending.values():
                if pending.status == "pending":
                    pending.status, pending.reason = "expired", "approval expired"
                    await self._close(pending)
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._status = "running"
        return {p.approval_id: Verdict(outcome=p.status, reason=p.reason, args=p.edited_args,
                                       by=p.call.votes[-1].by if p.call.votes else None,
                                       votes=p.call.votes).model_dump(mode="json")
                for p in self._pending.values()}

    async def _record(self, record: RecordRunInput) -> None:
        await workflow.execute_activity(contract.record_run, record, start_to_close_timeout=_RECORD_TIMEOUT)

    async def _close(self, pending: PendingAction) -> None:
        await workflow.execute_activity(
            contract.close_approval, CloseApprovalInput(approval_id=pending.approval_id, run_id=pending.run_id,
                                                        digest=pending.call.digest or "", status=pending.status,
                                                        votes=pending.call.votes, reason=pending.reason),
            start_to_close_timeout=_RECORD_TIMEOUT)

    def _person_input(self, payload: ApprovalDecisionInput | ApprovalEditInput) -> VerifyPersonInput:
        """A delivery as the worker checks it: the assertion and everything it must be bound to."""
        action: Literal["approve", "reject", "edit"] = (payload.decision if isinstance(payload, ApprovalDecisionInput)
                                                        else "edit")
        args = payload.args if isinstance(payload, ApprovalEditInput) else None
        return VerifyPersonInput(run_id=self._request.run_id if self._request else "",
                                 approval_id=payload.approval_id, digest=payload.digest, action=action,
                                 assertion=payload.assertion, args=args, comment=payload.comment,
                                 source=payload.source)

    async def _verify(self, payload: ApprovalDecisionInput | ApprovalEditInput) -> VerifiedPerson:
        """Who signed this decision, proven by the worker (signature, expiry, single use, user store), and
        that the assertion is for exactly this payload."""
        try:
            return await workflow.execute_activity(
                contract.verify_person, self._person_input(payload),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3))
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise ApplicationError(cause.message, type=cause.type or "AuthenticationError") from None
            raise ApplicationError(str(cause or exc), type="AuthenticationError") from None

    @workflow.update(name="decide_approval")
    async def decide_approval(self, decision: ApprovalDecisionInput) -> ApprovalDecisionResult:
        """Record one person's approve/reject; quorum turns it into a verdict."""
        return await self._once(decision, lambda: self._apply_decision(decision))

    @decide_approval.validator
    def _check_decision(self, decision: ApprovalDecisionInput) -> None:
        self._check_new(decision)
        self._check_action(decision.approval_id, decision.digest)
        if (problem := rejection_problem(decision.decision, decision.comment)) is not None:
            raise ApplicationError(problem, type="ApprovalError")

    async def _apply_decision(self, decision: ApprovalDecisionInput) -> ApprovalDecisionResult:
        person = await self._verify(decision)
        self._check_person(decision.approval_id, person, decision.digest)  # again: others decided meanwhile
        pending = self._pending[decision.approval_id]
        pending.call.votes.append(ApprovalVote(by=person.name, decision=decision.decision, comment=decision.comment,
                                               at=workflow.now(), digest=decision.digest, source=decision.source))
        needed = pending.call.approvals_needed
        approvals = len({v.by for v in pending.call.votes if v.decision == "approve"})
        if decision.decision == "reject":
            pending.status, pending.reason = "rejected", decision.comment
        elif approvals >= needed:
            pending.status = "approved"
        await self._close(pending)
        # pending.status is "expired" only if the approval timed out while this vote was being closed.
        return ApprovalDecisionResult(approval_id=pending.approval_id, status=pending.status,
                                      approvals=approvals, needed=needed)

    @workflow.update(name="edit_action")
    async def edit_action(self, edit: ApprovalEditInput) -> ApprovalDecisionResult:
        """Replace a gated action's arguments; the new action goes through the whole boundary again."""
        return await self._once(edit, lambda: self._apply_edit(edit))

    @edit_action.validator
    def _check_edit(self, edit: ApprovalEditInput) -> None:
        self._check_new(edit)
        self._check_action(edit.approval_id, edit.digest)

    async def _apply_edit(self, edit: ApprovalEditInput) -> ApprovalDecisionResult:
        pending = self._pending[edit.approval_id]
        valid = await workflow.execute_activity(
            contract.validate_tool_call, ValidateCallInput(run_id=pending.run_id, tool=pending.call.tool,
                                                           raw_arguments=json.dumps(edit.args)),
            start_to_close_timeout=_RECORD_TIMEOUT)
        if not valid.ok:  # refused before anything changes (or anyone counts as its editor)
            raise ApplicationError(f"the edited arguments are invalid: {valid.error}", type="ToolArgumentsError")
        person = await self._verify(edit)
        self._check_person(edit.approval_id, person, edit.digest)
        if pending.status != "pending":  # decided while the arguments were being checked
            raise ApplicationError(f"approval {edit.approval_id} is already {pending.status}", type="ApprovalError")
        pending.call.votes.append(ApprovalVote(by=person.name, decision="edit", comment=edit.comment,
                                               at=workflow.now(), digest=edit.digest, source=edit.source))
        pending.status, pending.edited_args, pending.reason = "edited", valid.args, edit.comment
        await self._close(pending)
        return ApprovalDecisionResult(approval_id=pending.approval_id, status="edited", approvals=0,
                                      needed=pending.call.approvals_needed)

    @workflow.signal(name="deliver_decision")
    async def deliver_decision(self, decision: ApprovalDecisionInput) -> None:
        """``decide_approval``'s decision, delivered durably: sent when no worker took the update in time.

        The same checks and the same verified person as the update; it counts once (by its key), and what
        became of it is recorded for the person (``settle_decision``).
        """
        await self._deliver(decision, lambda: self._check_decision(decision), lambda: self._apply_decision(decision))

    @workflow.signal(name="deliver_edit")
    async def deliver_edit(self, edit: ApprovalEditInput) -> None:
        """``edit_action``'s edit, delivered durably (see ``deliver_decision``)."""
        await self._deliver(edit, lambda: self._check_edit(edit), lambda: self._apply_edit(edit))

    def _check_new(self, payload: ApprovalDecisionInput | ApprovalEditInput) -> None:
        """A delivery is applied once, however many ways it arrives (an update the worker took late, and the
        signal sent because it did not take it in time)."""
        if delivery_key(payload) in self._taken:
            raise ApplicationError("this decision has reached the run already; it counts once", type="ApprovalError")

    async def _once(self, payload: ApprovalDecisionInput | ApprovalEditInput,
                    apply: Callable[[], Awaitable[ApprovalDecisionResult]]) -> ApprovalDecisionResult:
        """Apply this delivery unless it reached the run already; record what became of it on the decision's
        record, whichever way it came (the door may have stopped waiting for an update the worker then took,
        and no signal may follow), then remember it."""
        key = delivery_key(payload)
        if key in self._taken:  # the same decision, the other way, at the same time: that one counts
            raise ApplicationError("this decision has reached the run already; it counts once", type="ApprovalError")
        self._taken.add(key)
        try:
            result = await apply()
        except ApplicationError as exc:
            await self._ended(payload, _Outcome(applied=False, detail=exc.message), settle=True)
            raise
        except BaseException as exc:
            reason = failure_reason(exc) if isinstance(exc, ActivityError) else f"{type(exc).__name__}: {exc}"
            await self._ended(payload, _Outcome(applied=False, detail=f"the run could not record it: {reason}"[:2000]),
                              settle=isinstance(exc, Exception))
            raise
        await self._ended(payload, _Outcome(applied=True, detail=_shown_result(result)), settle=True)
        return result

    async def _ended(self, payload: ApprovalDecisionInput | ApprovalEditInput, outcome: _Outcome, *,
                     settle: bool) -> None:
        """A delivery ``_once`` applied or refused: recorded (in runs since every delivery settles; older
        histories settled signals only), then remembered, which a copy that came the other way waits for."""
        if settle and workflow.patched(_SETTLE_EVERY_DELIVERY):
            await self._settle(payload, outcome)
        self._outcomes[delivery_key(payload)] = outcome

    async def _deliver(self, payload: ApprovalDecisionInput | ApprovalEditInput, check: Callable[[], None],
                       apply: Callable[[], Awaitable[ApprovalDecisionResult]]) -> None:
        """A decision that came by signal: apply it (or find how its update went), then record the outcome.

        Nothing raised here may fail the run: every refusal becomes the recorded reason.
        """
        key, through_once = delivery_key(payload), False
        if key in self._taken:  # the update reached the run too: it counts, and says how it went
            await workflow.wait_condition(lambda: key in self._outcomes)
            outcome = self._outcomes[key]
        else:
            try:
                check()
                through_once = True  # from here on ``_once`` records it
                outcome = _Outcome(applied=True, detail=_shown_result(await self._once(payload, apply)))
            except ApplicationError as exc:
                outcome = _Outcome(applied=False, detail=exc.message)
            except ActivityError as exc:
                outcome = _Outcome(applied=False, detail=f"the run could not record it: {failure_reason(exc)}")
            except Exception as exc:  # noqa: BLE001 - a signal handler that raised would fail the workflow task
                outcome = _Outcome(applied=False, detail=f"internal error: {type(exc).__name__}: {exc}"[:2000])
            self._taken.add(key)
            outcome = self._outcomes.setdefault(key, outcome)
        if (through_once or key in self._settled) and workflow.patched(_SETTLE_EVERY_DELIVERY):
            return  # recorded already (older runs recorded each signal here)
        await self._settle(payload, outcome)

    async def _settle(self, payload: ApprovalDecisionInput | ApprovalEditInput, outcome: _Outcome) -> None:
        """Record what became of this delivery on its decision's record (``settle_decision``); the worker
        ignores a delivery its assertion is not bound to. A failure to record is logged, never raised: it
        must not fail the run, nor turn an applied decision into a refused one."""
        key = delivery_key(payload)
        if not outcome.applied:
            workflow.logger.warning("decision %s on %s refused: %s", key, payload.approval_id, outcome.detail)
        if self._request is None:  # not resolved yet: nothing can be recorded for it
            return
        settled = SettleDecisionInput(run_id=self._request.run_id, decision=self._person_input(payload),
                                      status="applied" if outcome.applied else "refused",
                                      reason=None if outcome.applied else outcome.detail,
                                      result=outcome.detail if outcome.applied else None)
        try:
            done = await workflow.execute_activity(contract.settle_decision, settled,
                                                   start_to_close_timeout=_RECORD_TIMEOUT)
        except ActivityError as exc:
            workflow.logger.warning("decision %s: its outcome could not be recorded: %s", key, failure_reason(exc))
            return
        if done.settled:  # else there was no record yet: a door may queue one, and its signal settles it
            self._settled.add(key)

    def _check_action(self, approval_id: str, digest: str) -> PendingAction:
        """Rules on the action alone, checked before anything is accepted into history."""
        pending = self._pending.get(approval_id)
        if pending is None:
            raise ApplicationError(f"no pending approval {approval_id} in this run", type="NotFoundError")
        if pending.status != "pending":
            raise ApplicationError(f"approval {approval_id} is already {pending.status}", type="ApprovalError")
        if workflow.now() >= pending.expires_at:
            raise ApplicationError(f"approval {approval_id} expired at {pending.expires_at.isoformat()}",
                                   type="ApprovalError")
        if digest != pending.call.digest:
            raise ApplicationError(f"approval {approval_id} is bound to action {pending.call.digest}; "
                                   f"the decision was made on {digest or 'nothing'}: reload and decide again",
                                   type="ApprovalError")
        return pending

    def _check_person(self, approval_id: str, person: VerifiedPerson, digest: str) -> None:
        """The rules every decision obeys, for a person the worker verified; raising refuses it."""
        pending = self._check_action(approval_id, digest)
        refusal = decision_refusal(person=person.name, roles=person.roles, requester=pending.requested_by,
                                   editors=pending.call.editors,
                                   approvers=pending.call.decision.approvers if pending.call.decision else [])
        if refusal is not None:
            raise ApplicationError(refusal, type="ApprovalError")
        if any(v.by == person.name for v in pending.call.votes):
            raise ApplicationError(f"{person.name} already decided approval {approval_id}", type="ApprovalError")

    @workflow.query(name="get_pending_actions")
    def get_pending_actions(self) -> list[PendingAction]:
        """Gated actions of this run that still wait for people."""
        return [p for p in self._pending.values() if p.status == "pending"]

    def note_progress(self, **fields: object) -> None:
        """Called by the graph's nodes as they go (see ``engine.runtime.state.note_progress``)."""
        self._progress = self._progress.model_copy(update=fields)

    @workflow.query(name="get_progress")
    def get_progress(self) -> RunProgress:
        """Where the run is now: step, what it is doing, and for gated actions who may approve and who did."""
        waiting = [WaitingApproval(
            approval_id=p.approval_id, tool=p.call.tool, args=p.call.args, expires_at=p.expires_at,
            reasons=p.call.decision.reasons if p.call.decision else [],
            approvers=p.call.decision.approvers if p.call.decision else [],
            needed=p.call.approvals_needed,
            approved_by=[v.by for v in p.call.votes if v.decision == "approve"])
            for p in self._pending.values() if p.status == "pending"]
        return self._progress.model_copy(update={"status": self._status, "waiting": waiting})

    @workflow.query(name="get_status")
    def get_status(self) -> str:
        """``running``, ``waiting_approval`` or how the run ended."""
        return self._status

