"""Graph nodes. They run in the workflow (deterministic) and call activities.

State is plain data (dicts of our pydantic models' dumps): LangChain message
objects and SQLModel rows never enter it, so every payload round-trips through
Temporal's converter unchanged. Nothing here has side effects before
``interrupt()``: approval ids and digests are pure functions of the state.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypedDict, TypeVar, runtime_checkable

from langgraph.types import interrupt
from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from engine.boundary import tool_message
from engine.runtime import contract
from engine.runtime.payloads import (
    CallModelInput,
    EvaluatePolicyInput,
    ExecuteToolInput,
    PolicyDecision,
    ResolvedRun,
    ToolCallRecord,
    ValidateCallInput,
    ValidateOutputInput,
    Verdict,
)
from engine.spec import endpoint_label

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

_QUICK = {"start_to_close_timeout": timedelta(seconds=30),
          "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=5)}
# Deciding reads the facts: a node that is down is retried briefly, then the action is denied (fail closed).
_FACTS = {"start_to_close_timeout": timedelta(seconds=60),
          "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=4)}
MAX_RECHECKS = 3
# What one model request may carry: every request is a message in the run's history, which Temporal
# refuses past 2 MB; a run reaching this ends (limit_reached) instead of failing a task it cannot write.
MAX_CONVERSATION_BYTES = 1536 * 1024
_TOOL = {"start_to_close_timeout": timedelta(minutes=5), "heartbeat_timeout": timedelta(seconds=10),
         "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=10,
                                     non_retryable_error_types=["ToolExecutionError"])}


class AgentState(TypedDict, total=False):
    """The graph's state; every value is plain data."""

    request: dict[str, Any]
    messages: list[dict[str, Any]]
    proposed: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    step: int
    usage: dict[str, Any]
    status: str | None
    reason: str | None
    output: str | None
    structured: dict[str, Any] | None
    output_repairs: int
    repairing: bool


async def _act(declared: Callable[[A], Awaitable[R]], arg: A, opts: dict[str, Any] = _QUICK) -> R:
    """Call an activity through its declaration (``engine.runtime.contract``): typed input and result."""
    return await workflow.execute_activity(declared, arg, **opts)


def failure_reason(exc: ActivityError) -> str:
    """``Type: message`` of the error that made an activity give up."""
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return f"{exc.activity_type} failed: {cause.type}: {cause.message}"
    return f"{exc.activity_type} failed: {cause or exc}"


def _request(state: AgentState) -> ResolvedRun:
    return ResolvedRun.model_validate(state["request"])


def _records(items: list[dict[str, Any]] | None) -> list[ToolCallRecord]:
    return [ToolCallRecord.model_validate(i) for i in items or []]


def _with(call: ToolCallRecord, **update: Any) -> ToolCallRecord:
    """A validated copy (model_copy would skip validation of nested values)."""
    dumped = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in update.items()}
    return ToolCallRecord.model_validate({**call.model_dump(mode="json"), **dumped})


@runtime_checkable
class ProgressSink(Protocol):
    """What a workflow running this graph offers its nodes: a place to say where the run is."""

    def note_progress(self, **fields: Any) -> None: ...


def note_progress(**fields: Any) -> None:
    """Tell the running workflow what the graph is doing now (answers its ``get_progress`` query)."""
    try:
        instance = workflow.instance()
    except RuntimeError:  # not inside a workflow (a node called directly)
        return
    if isinstance(instance, ProgressSink):
        instance.note_progress(**fields)


def _repairs(state: AgentState) -> int:
    """Invalid tool calls plus final answers that failed the output schema, so far."""
    invalid = sum(1 for c in state.get("calls") or [] if c.get("outcome") == "invalid")
    return invalid + state.get("output_repairs", 0)


def step_class(state: AgentState) -> str:
    """What kind of step the next model call is: ``plan``, ``tool_results`` or ``repair``."""
    step = state.get("step", 0)
    if step == 0:
        return "plan"
    last = [c for c in state.get("calls") or [] if c.get("step") == step]
    if state.get("repairing") or any(c.get("outcome") == "invalid" for c in last):
        return "repair"
    return "tool_results"


async def call_model(state: AgentState) -> dict[str, Any]:
    """Ask the model for the next step (in the ``call_model`` activity), routed by the step's class."""
    return await model_step(state, step_class(state))


async def model_step(state: AgentState, klass: str) -> dict[str, Any]:
    """One model step of class ``klass``: the spec's route for that class answers, else its model.

    Custom graphs call this from their own nodes to route their own step classes.
    """
    request = _request(state)
    spec, step = request.spec, state.get("step", 0)
    if step >= spec.limits.max_steps:
        return {"status": "limit_reached", "reason": f"max_steps ({spec.limits.max_steps}) reached"}
    if _repairs(state) > spec.limits.max_repairs:
        return {"status": "failed", "reason": f"the model's answers failed validation {_repairs(state)} times; "
                                              f"{spec.limits.max_repairs} repair(s) allowed (limits.max_repairs)"}
    usage = dict(state.get("usage") or {"model_calls": 0, "tokens": 0, "cost": 0.0})
    if (over := over_budget(spec.limits, usage)) is not None:
        return {"status": "limit_reached", "reason": over}
    tools = [t.function_schema() for t in spec.tool_specs]
    size = len(json.dumps([state["messages"], tools], ensure_ascii=False).encode("utf-8", errors="replace"))
    if size > MAX_CONVERSATION_BYTES:
        return {"status": "limit_reached", "reason": f"the conversation is {size} bytes; one model request "
                                                     f"carries at most {MAX_CONVERSATION_BYTES}"}
    model = spec.model_for(klass)
    note_progress(step=step + 1, activity="calling the model", model=endpoint_label(model, model.script),
                  step_class=klass, usage=usage)
    budget = sum(e.timeout_s for e in [model, *model.fallbacks]) + 5
    result = await _act(contract.call_model, CallModelInput(
        run_id=request.run_id, step=step + 1, model=model, messages=state["messages"], tools=tools,
        workflow=spec.name, version=spec.version, tenant=request.tenant, prompt_hash=spec.prompt_hash,
        daily_cost_cap=spec.limits.daily_cost, step_class=klass, output_schema=spec.output_json_schema),
        {"start_to_close_timeout": timedelta(seconds=budget),
         "retry_policy": RetryPolicy(maximum_attempts=3, non_retryable_error_types=["ModelError"])})
    if result.refused:
        return {"status": "limit_reached", "reason": result.refused}
    usage = {"model_calls": usage["model_calls"] + 1, "tokens": usage["tokens"] + result.input_tokens +
             result.output_tokens, "cost": round(usage["cost"] + result.cost, 8)}
    note_progress(usage=usage)
    message: dict[str, Any] = {"role": "assistant", "content": result.content}
    if result.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in result.tool_calls]
    update: dict[str, Any] = {"messages": [*state["messages"], message], "step": step + 1, "usage": usage,
                              "repairing": False}
    if not result.tool_calls:
        return {**update, **await _final_answer(request, state, step + 1, result.content, update["messages"])}
    used = len(state.get("calls") or [])
    if used + len(result.tool_calls) > spec.limits.max_tool_calls:
        return {**update, "status": "limit_reached",
                "reason": f"max_tool_calls ({spec.limits.max_tool_calls}) reached; "
                          f"{len(result.tool_calls)} proposed call(s) not executed"}
    proposed = [ToolCallRecord(call_id=c.id, step=step + 1, index=i, tool=c.name, raw_arguments=c.arguments,
                               reason=result.content).model_dump(mode="json")
                for i, c in enumerate(result.tool_calls)]
    return {**update, "proposed": proposed}


async def _final_answer(request: ResolvedRun, state: AgentState, step: int, content: str | None,
                        messages: list[dict[str, Any]]) -> dict[str, Any]:
    """End the run with the answer, or, when it fails the output schema, ask the model to repair it."""
    spec = request.spec
    if not spec.output_schema:
        return {"status": "completed", "output": content}
    note_progress(activity="validating the final answer")
    checked = await _act(contract.validate_output, ValidateOutputInput(run_id=request.run_id, step=step,
                                                                      content=content))
    if checked.ok:
        return {"status": "completed", "output": content, "structured": checked.value}
    repairs = state.get("output_repairs", 0) + 1
    if _repairs(state) + 1 > spec.limits.max_repairs:
        return {"status": "failed", "output_repairs": repairs,
                "reason": f"the final answer does not match the output schema ({spec.output_schema}) after "
                          f"{spec.limits.max_repairs} repair(s) (limits.max_repairs): {checked.error}"}
    repair = {"role": "user", "content": f"Your final answer does not match the required output schema: "
                                         f"{checked.error}. Answer again with only a JSON object that matches it."}
    return {"messages": [*messages, repair], "output_repairs": repairs, "repairing": True}


def over_budget(limits: Any, usage: dict[str, Any]) -> str | None:
    """Why the run may not call the model again, or None. Checked only between steps: no action is cut."""
    if limits.max_model_calls is not None and usage["model_calls"] >= limits.max_model_calls:
        return f"budget: max_model_calls ({limits.max_model_calls}) reached"
    if limits.max_tokens is not None and usage["tokens"] >= limits.max_tokens:
        return f"budget: max_tokens ({limits.max_tokens}) reached with {usage['tokens']} tokens used"
    if limits.max_cost is not None and usage["cost"] >= limits.max_cost:
        return f"budget: max_cost ({limits.max_cost:g}) reached with {usage['cost']:g} spent"
    return None


async def check_tool_calls(state: AgentState) -> dict[str, Any]:
    """Validate, gather facts and ask policy for every proposed call."""
    request = _request(state)
    checked: list[dict[str, Any]] = []
    for call in _records(state.get("proposed")):
        if call.outcome == "proposed":  # new, or edited by a person: decided afresh
            call = await _check_one(request, call)
        checked.append(call.model_dump(mode="json"))
    return {"proposed": checked}


async def _check_one(request: ResolvedRun, call: ToolCallRecord) -> ToolCallRecord:
    if request.spec.tool(call.tool) is None:
        available = ", ".join(t.name for t in request.spec.tool_specs)
        return _with(call, outcome="invalid", error=f"unknown tool {call.tool!r}; available: {available}")
    note_progress(activity=f"checking {call.tool}")
    valid = await _act(contract.validate_tool_call, ValidateCallInput(
        run_id=request.run_id, tool=call.tool, raw_arguments=call.raw_arguments, step=call.step,
        call_id=call.call_id))
    if not valid.ok:
        return _with(call, outcome="invalid", error=valid.error)
    call = _with(call, args=valid.args)
    try:  # the worker reads the facts itself and decides on them
        decided = await _act(contract.evaluate_policy, EvaluatePolicyInput(run_id=request.run_id, call=call),
                             _FACTS)
    except ActivityError as exc:  # facts that cannot be read are a denial, never a guess
        return _with(call, outcome="denied", decision=PolicyDecision(
            outcome="deny", reasons=["facts unavailable", failure_reason(exc)]))
    decision = decided.decision
    outcome = {"allow": "allowed", "deny": "denied", "require_approval": "pending_approval"}[decision.outcome]
    return _with(call, decision=decision, outcome=outcome, facts=decided.facts, digest=decided.digest,
                 approval_id=decided.approval_id)


async def await_approval(state: AgentState) -> dict[str, Any]:
    """Pause the graph until people decide; the workflow carries the wait."""
    calls = _records(state.get("proposed"))
    pending = [c.model_dump(mode="json") for c in calls if c.outcome == "pending_approval"]
    answered = interrupt({"actions": pending})  # the workflow resumes with {approval_id: Verdict as JSON}
    verdicts = {key: Verdict.model_validate(value) for key, value in answered.items()}
    decided = []
    for call in calls:
        verdict = verdicts.get(call.approval_id or "") if call.outcome == "pending_approval" else None
        if verdict is not None and verdict.outcome == "edited":
            editor = verdict.by or ""
            call = _with(call, outcome="proposed", raw_arguments=json.dumps(verdict.args), args={}, facts={},
                         decision=None, digest=None, approval_id=None, votes=[], revision=call.revision + 1,
                         edited_by=editor, editors=sorted({*call.editors, editor}), previous_args=call.args)
        elif verdict is not None:
            call = _with(call, outcome=verdict.outcome, error=verdict.reason, votes=verdict.votes)
        decided.append(call.model_dump(mode="json"))
    return {"proposed": decided}


async def execute_tools(state: AgentState) -> dict[str, Any]:
    """Run allowed and approved calls once each; tell the model every outcome."""
    request = _request(state)
    messages = list(state["messages"])
    done: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    for call in _records(state.get("proposed")):
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
        ran = await _act(contract.execute_tool, ExecuteToolInput(run_id=request.run_id, call=call), _TOOL)
    except ActivityError as exc:  # retries exhausted (node down): report it, never guess
        return _with(call, outcome="failed", error=failure_reason(exc))
    if ran.refused:  # the store holds no authority for exactly this action: it never ran
        return _with(call, outcome="denied", error=ran.error, decision=PolicyDecision(
            outcome="deny", reasons=[ran.error or "not authorised"]))
    if not ran.stale:
        return _with(call, outcome="executed" if ran.ok else "failed", result=ran.result, error=ran.error)
    if call.rechecks + 1 >= MAX_RECHECKS:
        return _with(call, outcome="denied", error=ran.error, decision=PolicyDecision(
            outcome="deny", reasons=[f"state kept changing before execution ({MAX_RECHECKS} checks)", ran.error or ""]))
    return _with(call, outcome="proposed", facts={}, decision=None, digest=None, approval_id=None, votes=[],
                 rechecks=call.rechecks + 1, recheck_reason=ran.error)


async def route_after_model(state: AgentState) -> str:
    """End when the run has a status; otherwise check the proposed calls."""
    return "end" if state.get("status") else "check_tool_calls"


async def route_after_approval(state: AgentState) -> str:
    """Edited actions go back through the whole boundary; the rest execute (or not)."""
    edited = any(c.get("outcome") == "proposed" for c in state.get("proposed") or [])
    return "check_tool_calls" if edited else "execute_tools"


async def route_after_execute(state: AgentState) -> str:
    """Actions whose facts changed before execution are checked again; otherwise go on."""
    return "check_tool_calls" if state.get("proposed") else "then"


async def route_after_check(state: AgentState) -> str:
    """Wait for people only when some call needs approval."""
    pending = any(c.get("outcome") == "pending_approval" for c in state.get("proposed") or [])
    return "await_approval" if pending else "execute_tools"
