"""The graph's nodes and routers on their own (no Temporal): step classes, limits, budgets, routing, verdicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from engine.runtime import nodes
from engine.runtime.payloads import ApprovalVote, ToolCallRecord, Verdict
from engine.runtime.state import AgentState
from tests.unit.runtime.states import call, state


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
    vote = ApprovalVote(by="bob", decision="approve", at=datetime(2026, 1, 1, tzinfo=UTC))
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
