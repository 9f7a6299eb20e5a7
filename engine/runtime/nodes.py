"""The boundary's graph nodes: check every proposed call, wait for people, execute exactly once.

They run in the workflow (deterministic) and call activities. Nothing here has
side effects before ``interrupt()``: approval ids and digests are pure
functions of the state. The routers read the state through the typed records.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Literal

from langgraph.types import interrupt
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from engine.boundary import tool_message
from engine.runtime import contract
from engine.runtime.activity_io import (
    UNCHECKED,
    CheckCallInput,
    EvaluatePolicyInput,
    EvaluatePolicyResult,
    ExecuteToolInput,
    ReleaseLeaseInput,
    ValidateCallInput,
)
from engine.runtime.payloads import PolicyDecision, ResolvedRun, ToolCallRecord, Verdict
from engine.runtime.state import AgentState, act, act_here, failure_reason, note_progress, records, request_of, updated

# Deciding reads the facts: a node that is down is retried briefly, then the action is denied (fail closed).
_FACTS = {"start_to_close_timeout": timedelta(seconds=60),
          "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=4)}
_TOOL = {"start_to_close_timeout": timedelta(minutes=5), "heartbeat_timeout": timedelta(seconds=10),
         "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=10,
                                     non_retryable_error_types=["ToolExecutionError"])}
MAX_RECHECKS = 3
# Runs started since this patch validate and decide each proposed call in one step (``check_call``); earlier
# histories replay their two (``validate_tool_call``, then ``evaluate_policy``).
CHECK_IN_ONE_STEP = "check-call-in-one-step"


async def check_tool_calls(state: AgentState) -> dict[str, Any]:
    """Validate, gather facts and ask policy for every proposed call."""
    request = request_of(state)
    checked: list[dict[str, Any]] = []
    for call in records(state.get("proposed")):
        if call.outcome == "proposed":  # new, or edited by a person: decided afresh
            call = await _check_one(request, call)
        checked.append(call.model_dump(mode="json"))
    return {"proposed": checked}


async def _check_one(request: ResolvedRun, call: ToolCallRecord) -> ToolCallRecord:
    if request.spec.tool(call.tool) is None:
        available = ", ".join(t.name for t in request.spec.tool_specs)
        return updated(call, outcome="invalid", error=f"unknown tool {call.tool!r}; available: {available}")
    note_progress(activity=f"checking {call.tool}")
    if workflow.patched(CHECK_IN_ONE_STEP):
        try:  # the worker validates, reads the facts itself and decides on them, in one step
            checked = await act_here(contract.check_call, CheckCallInput(run_id=request.run_id, call=call), _FACTS)
        except ActivityError as exc:  # a call that cannot be checked is a denial, never a guess
            return _unchecked(call, exc)
        if not checked.valid.ok or checked.decided is None:
            return updated(call, outcome="invalid", error=checked.valid.error)
        return _decided(updated(call, args=checked.valid.args), checked.decided)
    valid = await act_here(contract.validate_tool_call, ValidateCallInput(
        run_id=request.run_id, tool=call.tool, raw_arguments=call.raw_arguments, step=call.step,
        call_id=call.call_id))
    if not valid.ok:
        return updated(call, outcome="invalid", error=valid.error)
    call = updated(call, args=valid.args)
    try:  # the worker reads the facts itself and decides on them
        decided = await act_here(contract.evaluate_policy, EvaluatePolicyInput(run_id=request.run_id, call=call),
                             _FACTS)
    except ActivityError as exc:  # facts that cannot be read are a denial, never a guess
        return _unchecked(call, exc)
    return _decided(call, decided)


# Why a call that could not be decided is denied, by the error that stopped its check (else: its facts).
_UNDECIDED = {UNCHECKED: "arguments unchecked", "LimitError": "limit reached",
              "DefinitionError": "definition unavailable"}


def _unchecked(call: ToolCallRecord, exc: ActivityError) -> ToolCallRecord:
    """Denied: what deciding needed (the facts, recording the arguments' check, room under the run's limits, the
    run's definition) could not be had."""
    cause = exc.cause
    what = _UNDECIDED.get(cause.type or "", "facts unavailable") if isinstance(cause, ApplicationError) \
        else "facts unavailable"
    return updated(call, outcome="denied", decision=PolicyDecision(outcome="deny",
                                                                   reasons=[what, failure_reason(exc)]))


def _decided(call: ToolCallRecord, decided: EvaluatePolicyResult) -> ToolCallRecord:
    decision = decided.decision
    outcome = {"allow": "allowed", "deny": "denied", "require_approval": "pending_approval"}[decision.outcome]
    return updated(call, decision=decision, outcome=outcome, facts=decided.facts, digest=decided.digest,
                 approval_id=decided.approval_id)


async def await_approval(state: AgentState) -> dict[str, Any]:
    """Pause the graph until people decide; the workflow carries the wait."""
    calls = records(state.get("proposed"))
    pending = [c.model_dump(mode="json") for c in calls if c.outcome == "pending_approval"]
    answered = interrupt({"actions": pending})  # the workflow resumes with {approval_id: Verdict as JSON}
    verdicts = {key: Verdict.model_validate(value) for key, value in answered.items()}
    decided = []
    for call in calls:
        verdict = verdicts.get(call.approval_id or "") if call.outcome == "pending_approval" else None
        if verdict is not None and verdict.outcome == "edited":
            editor = verdict.by or ""
            call = updated(call, outcome="proposed", raw_arguments=json.dumps(verdict.args), args={}, facts={},
                         decision=None, digest=None, approval_id=None, votes=[], revision=call.revision + 1,
                         edited_by=editor, editors=sorted({*call.editors, editor}), previous_args=call.args)
        elif verdict is not None:
            call = updated(call, outcome=verdict.outcome, error=verdict.reason, votes=verdict.votes)
        decided.append(call.model_dump(mode="json"))
    return {"proposed": decided}


async def execute_tools(state: AgentState) -> dict[str, Any]:
    """Run allowed and approved calls once each; tell the model every outcome."""
    request = request_of(state)
    messages = list(state["messages"])
    done: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    for call in records(state.get("proposed")):
        if call.outcome in ("allowed", "approved"):
            call = await _execute_one(request, call)
        if call.outcome == "proposed":  # the world changed since the decision: back through the boundary
            again.append(call.model_dump(mode="json"))
            continue
        messages.append({"role": "tool", "tool_call_id": call.call_id, "content": tool_message(call)})
        done.append(call.model_dump(mode="json"))
    return {"messages": messages, "proposed": again, "calls": [*(state.get("calls") or []), *done]}


async def _execute_one(request: ResolvedRun, call: ToolCallRecord) -> ToolCallRecord:
    note_progress(activity=f"executing {call.tool}")
    try:
        ran = await act(contract.execute_tool, ExecuteToolInput(run_id=request.run_id, call=call), _TOOL)
    except ActivityError as exc:  # retries exhausted (node down): report it, never guess
        if workflow.patched("release-lease-after-giving-up"):  # no retry will come: others need not wait
            await _release_lease(request, exc)
        return updated(call, outcome="failed", error=failure_reason(exc))
    if ran.refused:  # the store holds no authority for exactly this action: it never ran
        return updated(call, outcome="denied", error=ran.error, decision=PolicyDecision(
            outcome="deny", reasons=[ran.error or "not authorised"]))
    if not ran.stale:
        return updated(call, outcome="executed" if ran.ok else "failed", result=ran.result, error=ran.error)
    if call.rechecks + 1 >= MAX_RECHECKS:
        return updated(call, outcome="denied", error=ran.error, decision=PolicyDecision(
            outcome="deny", reasons=[f"state kept changing before execution ({MAX_RECHECKS} checks)", ran.error or ""]))
    return updated(call, outcome="proposed", facts={}, decision=None, digest=None, approval_id=None, votes=[],
                 rechecks=call.rechecks + 1, recheck_reason=ran.error)


async def _release_lease(request: ResolvedRun, exc: ActivityError) -> None:
    """Give back the lease of an execution activity that gave up. When the store is down too, the lease
    stays until this run closes (``authority.take_lock`` asks Temporal), and the run goes on."""
    ended = isinstance(exc.cause, ApplicationError)  # raised: not a timeout or a cancellation
    try:
        await act(contract.release_lease, ReleaseLeaseInput(run_id=request.run_id, activity_id=exc.activity_id,
                                                            ended=ended))
    except ActivityError as failed:
        workflow.logger.warning("could not release the lease of %s: %s", exc.activity_id, failure_reason(failed))


async def route_after_model(state: AgentState) -> Literal["end", "check_tool_calls"]:
    """End when the run has a status; otherwise check the proposed calls."""
    return "end" if state.get("status") else "check_tool_calls"


async def route_after_approval(state: AgentState) -> Literal["check_tool_calls", "execute_tools"]:
    """Edited actions go back through the whole boundary; the rest execute (or not)."""
    edited = any(c.outcome == "proposed" for c in records(state.get("proposed")))
    return "check_tool_calls" if edited else "execute_tools"


async def route_after_execute(state: AgentState) -> Literal["check_tool_calls", "then"]:
    """Actions whose facts changed before execution are checked again; otherwise go on."""
    return "check_tool_calls" if state.get("proposed") else "then"


async def route_after_check(state: AgentState) -> Literal["await_approval", "execute_tools"]:
    """Wait for people only when some call needs approval."""
    pending = any(c.outcome == "pending_approval" for c in records(state.get("proposed")))
    return "await_approval" if pending else "execute_tools"
