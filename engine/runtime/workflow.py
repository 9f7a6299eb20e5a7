"""The Temporal workflow: one durable run of an agent graph.

The graph runs inside the workflow through ``temporalio-langgraph``. When the
boundary needs people, the graph interrupts; the workflow records the inbox
rows, exposes the pending actions through ``get_pending_actions`` and waits
durably for decisions or the approval timeout, then resumes the graph with the
verdicts.

People's decisions (the ``decide_approval``/``edit_action`` updates and the
``deliver_decision``/``deliver_edit`` signals) are handled by the base class
``engine.runtime.decisions.DecisionHandlers``; this module owns the run itself:
resolving the request, driving the graph, waiting for people, recording the
result, and the queries.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

# Workflow code too (checked by the sandbox like this module); it passes its own imports through.
from engine.runtime.decisions import RECORD_TIMEOUT, DecisionHandlers

with workflow.unsafe.imports_passed_through():
    from langgraph.types import Command
    from pydantic import ValidationError
    from temporalio.langgraph import graph as registered_graph

    # by its full name: ``from engine.runtime import contract`` would load the module afresh inside the
    # sandbox for every run (importlib resolves a from-list's submodule past the sandbox's passthrough)
    import engine.runtime.contract as contract
    from engine.boundary.inputs import one_line
    from engine.runtime.activity_io import GuardInputInput, OpenApprovalsInput, RecordRunInput, ResolveRunInput
    from engine.runtime.compiler import compiled, graph_name, initial_state
    from engine.runtime.payloads import (
        PendingAction,
        ResolvedRun,
        RunProgress,
        RunRequest,
        RunResult,
        RunStatus,
        ToolCallRecord,
        Verdict,
        WaitingApproval,
    )
    from engine.runtime.state import act_here, failure_reason

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig


def user_message(run_input: dict[str, Any]) -> str:
    """The first user turn: ``input.message`` when given, else the input as JSON."""
    message = run_input.get("message")
    return message if isinstance(message, str) else json.dumps(run_input, sort_keys=True)


@workflow.defn(name="AgentRunWorkflow")
class AgentRunWorkflow(DecisionHandlers):
    """Runs one agent workflow spec to completion."""

    def __init__(self) -> None:
        super().__init__()
        self._request: ResolvedRun | None = None
        self._status: RunStatus = "running"
        self._pending: dict[str, PendingAction] = {}
        self._progress = RunProgress()

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
            resolved = await act_here(contract.resolve_run, ResolveRunInput(request=asked),
                                      {"start_to_close_timeout": RECORD_TIMEOUT})
        except ActivityError as exc:  # not authenticated, or no such definition: nothing ran
            return self._refused(asked.run_id, asked.workflow, f"refused: {failure_reason(exc)}")
        except Exception as exc:  # noqa: BLE001 - e.g. a definition this workflow cannot decode
            return self._refused(asked.run_id, asked.workflow, f"refused: {type(exc).__name__}: {exc}"[:2000])
        request = self._request = resolved.run
        try:
            result = await self._drive(request)
        except asyncio.CancelledError:
            # Cancelled through Temporal (its UI, CLI or a client's cancel): close what waits for people and
            # record the run as ended, then end as cancelled. (A terminated workflow runs no code: its record
            # and approvals stay open, so cancel a run rather than terminate it.)
            await self._cancelled(request)
            raise
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

    async def _cancelled(self, request: ResolvedRun) -> None:
        # The reason given with the cancellation (Airlock's doors: "<person> cancelled it: <why>"), else a plain one.
        given = one_line(workflow.cancellation_reason() or "", 2000)  # worded by whoever reached Temporal
        reason = f"cancelled: {given}" if given else "cancelled: the run's workflow was asked to cancel"
        for pending in self._pending.values():
            if pending.status == "pending":
                pending.status, pending.reason = "expired", f"the run was cancelled ({reason})"
                await self._close(pending)
        self._status = "cancelled"
        self.note_progress(activity="cancelled")
        await self._record(RecordRunInput(run_id=request.run_id, status="cancelled", result=RunResult(
            run_id=request.run_id, workflow=request.spec.name, version=request.spec.version, status="cancelled",
            reason=reason)))

    async def _drive(self, request: ResolvedRun) -> RunResult:
        """Run the graph to its end, pausing for people at each interrupt."""
        app = compiled(registered_graph(graph_name(request.spec)))
        config: RunnableConfig = {"configurable": {"thread_id": request.run_id}}
        try:
            message = user_message(request.input)
            if request.spec.input_guard is not None:  # only runs of guarded workflows schedule this activity
                self.note_progress(activity="checking the input")
                guarded = await workflow.execute_activity(
                    contract.guard_input, GuardInputInput(run_id=request.run_id, message=message),
                    start_to_close_timeout=RECORD_TIMEOUT)
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
            start_to_close_timeout=RECORD_TIMEOUT)
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
        await act_here(contract.record_run, record, {"start_to_close_timeout": RECORD_TIMEOUT})

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

