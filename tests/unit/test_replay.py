"""Saved histories must replay on the current workflow code (no model, OPA or DB is called)."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.graph import START, StateGraph
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Replayer

from engine import nodes
from engine.compiler import AGENT_GRAPH, agent_graph
from engine.workflow import AgentRunWorkflow

HISTORIES = sorted((Path(__file__).resolve().parent.parent / "histories").glob("*.json"))


def _replayer(graph: StateGraph) -> Replayer:
    return Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter,
                    plugins=[LangGraphPlugin(graphs={AGENT_GRAPH: graph})])


@pytest.mark.parametrize("path", HISTORIES, ids=[p.name for p in HISTORIES])
async def test_saved_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await _replayer(agent_graph()).replay_workflow(history)
    assert result.replay_failure is None


async def test_replay_detects_a_graph_that_skips_approval() -> None:
    async def never_wait(state: nodes.AgentState) -> str:
        return "execute_tools"

    graph = StateGraph(nodes.AgentState)
    graph.add_node("call_model", nodes.call_model, metadata={"execute_in": "workflow"})
    graph.add_node("check_tool_calls", nodes.check_tool_calls, metadata={"execute_in": "workflow"})
    graph.add_node("execute_tools", nodes.execute_tools, metadata={"execute_in": "workflow"})
    graph.add_edge(START, "call_model")
    graph.add_conditional_edges("call_model", nodes.route_after_model,
                                {"end": "__end__", "check_tool_calls": "check_tool_calls"})
    graph.add_conditional_edges("check_tool_calls", never_wait, {"execute_tools": "execute_tools"})
    graph.add_edge("execute_tools", "call_model")
    path = HISTORIES[0]
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await _replayer(graph).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
