"""The model step: ask the run's model (routed by the step's class) within the run's limits and budgets.

Custom graphs call :func:`model_step` from their own nodes; the built-in graph
uses :func:`call_model`. A final answer is checked against the output schema
here; proposed tool calls go on to the boundary nodes (``engine.runtime.nodes``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from engine.runtime import contract
from engine.runtime.activity_io import CallModelInput, ValidateOutputInput
from engine.runtime.payloads import ResolvedRun, ToolCallRecord
from engine.runtime.state import AgentState, act, act_here, note_progress, records, request_of
from engine.spec import endpoint_label

# What one model request may carry: every request is a message in the run's history, which Temporal
# refuses past 2 MB; a run reaching this ends (limit_reached) instead of failing a task it cannot write.
MAX_CONVERSATION_BYTES = 1536 * 1024


def _repairs(state: AgentState) -> int:
    """Invalid tool calls plus final answers that failed the output schema, so far."""
    invalid = sum(1 for c in records(state.get("calls")) if c.outcome == "invalid")
    return invalid + state.get("output_repairs", 0)


def step_class(state: AgentState) -> str:
    """What kind of step the next model call is: ``plan``, ``tool_results`` or ``repair``."""
    step = state.get("step", 0)
    if step == 0:
        return "plan"
    last = [c for c in records(state.get("calls")) if c.step == step]
    if state.get("repairing") or any(c.outcome == "invalid" for c in last):
        return "repair"
    return "tool_results"


async def call_model(state: AgentState) -> dict[str, Any]:
    """Ask the model for the next step (in the ``call_model`` activity), routed by the step's class."""
    return await model_step(state, step_class(state))


async def model_step(state: AgentState, klass: str) -> dict[str, Any]:
    """One model step of class ``klass``: the spec's route for that class answers, else its model.

    Custom graphs call this from their own nodes to route their own step classes.
    """
    request = request_of(state)
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
    result = await act(contract.call_model, CallModelInput(
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
    checked = await act_here(contract.validate_output, ValidateOutputInput(run_id=request.run_id, step=step,
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
