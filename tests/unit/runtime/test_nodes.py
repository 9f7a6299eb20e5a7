"""The graph's nodes and routers on their own (no Temporal): step classes, limits, budgets, routing, verdicts."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from engine.runtime import nodes
from engine.runtime.nodes import AgentState
from engine.runtime.payloads import ApprovalVote, ResolvedRun, ToolCallRecord, Verdict
from engine.spec import LimitsSpec, load_spec
from tests.helpers import ROOT

SPEC = load_spec(ROOT / "workflows/support_refund.yaml", project_dir=ROOT)


def state(**fields: Any) -> AgentState:
    limits = fields.pop("limits", {})
    spec = SPEC.model_copy(update={"limits": SPEC.limits.model_copy(update=limits)})
    run = ResolvedRun(run_id="r1", spec=spec, requested_by="alice", tenant="default", input={},
                      workflow_run_id="w1")
    base: dict[str, Any] = {"request": run.model_dump(mode="json"), "step": 0, "messages": [], "calls": [],
                            "proposed": []}
    return AgentState(**{**base, **fields})  # type: ignore[typeddict-item]


def call(outcome: str, step: int = 1, **fields: Any) -> dict[str, Any]:
    return ToolCallRecord(call_id=f"c{step}", step=step, index=0, tool="issue_refund", outcome=outcome,  # type: ignore[arg-type]
                          **fields).model_dump(mode="json")


def test_step_classes() -> None:
    assert nodes.step_class(state()) == "plan"
    assert nodes.step_class(state(step=2, calls=[call("executed", step=2)])) == "tool_results"
    assert nodes.step_class(state(step=2, calls=[call("invalid", step=2)])) == "repair"
    assert nodes.step_class(state(step=2, calls=[call("invalid", step=1)])) == "tool_results"  # an older step's
    assert nodes.step_class(state(step=3, repairing=True)) == "repair"


@pytest.mark.parametrize("limits, usage, reason", [
    ({"max_model_calls": 2}, {"model_calls": 2, "tokens": 0, "cost": 0.0}, "budget: max_model_calls (2) reached"),
    ({"max_tokens": 100}, {"model_calls": 1, "tokens": 150, "cost": 0.0},
     "budget: max_tokens (100) reached with 150 tokens used"),
    ({"max_cost": 0.5}, {"model_calls": 1, "tokens": 0, "cost": 0.5}, "budget: max_cost (0.5) reached with 0.5 spent"),
    ({"max_cost": 0.5, "max_tokens": 100}, {"model_calls": 1, "tokens": 99, "cost": 0.49}, None),
])
def test_budgets(limits: dict[str, Any], usage: dict[str, Any], reason: str | None) -> None:
    assert nodes.over_budget(LimitsSpec(**limits), usage) == reason


@pytest.mark.parametrize("fields, expected", [
    ({"step": 8, "limits": {"max_steps": 8}}, {"status": "limit_reached", "reason": "max_steps (8) reached"}),
    ({"step": 1, "calls": [call("invalid")] * 4, "limits": {"max_repairs": 3}},
     {"status": "failed", "reason": "the model's answers failed validation 4 times; 3 repair(s) allowed "
                                    "(limits.max_repairs)"}),
    ({"step": 1, "limits": {"max_model_calls": 1}, "usage": {"model_calls": 1, "tokens": 10, "cost": 0.0}},
     {"status": "limit_reached", "reason": "budget: max_model_calls (1) reached"}),
])
async def test_a_model_step_past_a_limit_ends_without_calling_the_model(fields: dict[str, Any],
                                                                       expected: dict[str, Any]) -> None:
    assert await nodes.model_step(state(**fields), "plan") == expected  # outside a workflow: no activity to call


async def test_a_conversation_too_large_for_one_request_ends_the_run() -> None:
    big = [{"role": "user", "content": "x" * (nodes.MAX_CONVERSATION_BYTES + 1)}]
    ended = await nodes.model_step(state(step=1, messages=big), "tool_results")
    assert ended["status"] == "limit_reached" and ended["reason"].startswith("the conversation is ")


@pytest.mark.parametrize("router, fields, route", [
    (nodes.route_after_model, {"status": "completed"}, "end"),
    (nodes.route_after_model, {}, "check_tool_calls"),
    (nodes.route_after_check, {"proposed": [call("pending_approval")]}, "await_approval"),
    (nodes.route_after_check, {"proposed": [call("allowed")]}, "execute_tools"),
    (nodes.route_after_approval, {"proposed": [call("proposed")]}, "check_tool_calls"),
    (nodes.route_after_approval, {"proposed": [call("approved")]}, "execute_tools"),
    (nodes.route_after_execute, {"proposed": [call("proposed")]}, "check_tool_calls"),
    (nodes.route_after_execute, {"proposed": []}, "then"),
])
async def test_routers(router: Any, fields: dict[str, Any], route: str) -> None:
    assert await router(state(**fields)) == route


async def test_await_approval_applies_each_verdict() -> None:
    graph = StateGraph(AgentState)
    graph.add_node("await_approval", nodes.await_approval)
    graph.add_edge(START, "await_approval")
    graph.add_edge("await_approval", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    waiting = [call("pending_approval", step=1, approval_id="a1", args={"amount": "180.00"}),
               call("pending_approval", step=2, approval_id="a2", args={"amount": "300.00"}),
               call("pending_approval", step=3, approval_id="a3", args={"amount": "90.00"})]
    paused = await app.ainvoke(state(proposed=waiting), config)
    assert [a["approval_id"] for a in paused["__interrupt__"][0].value["actions"]] == ["a1", "a2", "a3"]
    vote = ApprovalVote(by="bob", decision="approve", at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    verdicts = {"a1": Verdict(outcome="approved", by="bob", votes=[vote]),
                "a2": Verdict(outcome="rejected", reason="too much", by="carol"),
                "a3": Verdict(outcome="edited", by="bob", args={"amount": "50.00"})}
    done = await app.ainvoke(Command(resume={k: v.model_dump(mode="json") for k, v in verdicts.items()}), config)
    approved, rejected, edited = [ToolCallRecord.model_validate(c) for c in done["proposed"]]
    assert (approved.outcome, [v.by for v in approved.votes]) == ("approved", ["bob"])
    assert (rejected.outcome, rejected.error) == ("rejected", "too much")
    assert (edited.outcome, edited.raw_arguments, edited.edited_by, edited.revision) == (
        "proposed", '{"amount": "50.00"}', "bob", 1)
    assert edited.previous_args == {"amount": "90.00"} and edited.approval_id is None and edited.editors == ["bob"]
