"""Saved histories must replay on the current workflow code (no model, OPA or DB is called)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from langgraph.graph import START, StateGraph
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Replayer

from engine.adapters.llm import ModelClient
from engine.graph import AgentState, call_model
from engine.runtime import nodes
from engine.runtime.activity_io import CallModelResult
from engine.runtime.compiler import AGENT_GRAPH, agent_graph
from engine.runtime.workflow import AgentRunWorkflow

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
    async def never_wait(state: AgentState) -> str:
        return "execute_tools"

    graph = StateGraph(AgentState)
    graph.add_node("call_model", call_model, metadata={"execute_in": "workflow"})
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


async def test_a_run_answered_by_the_fallback_model_replays_without_calling_a_model(monkeypatch) -> None:
    """The fallback's answers are activity results in history: replay takes them from there."""
    path = Path(__file__).resolve().parent.parent / "histories" / "support_refund_fallback.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    answers = [pydantic_data_converter.payload_converter.from_payload(
        e.activity_task_completed_event_attributes.result.payloads[0], CallModelResult)
        for e in history.events if e.HasField("activity_task_completed_event_attributes")
        and b'"fallback_used"' in e.activity_task_completed_event_attributes.result.payloads[0].data]
    # the history really is of the fallback path: the primary failed (500, then its breaker open) every time
    assert len(answers) == 5 and all(a.fallback_used for a in answers)
    assert "InternalServerError" in (answers[0].attempts[0].error or "")
    assert answers[-1].attempts[0].error == "circuit open: skipped"

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("replay called the model")

    monkeypatch.setattr(ModelClient, "complete", no_model)
    monkeypatch.setattr(openai.resources.chat.AsyncCompletions, "create", no_model)
    result = await _replayer(agent_graph()).replay_workflow(history)
    assert result.replay_failure is None


async def test_a_run_does_not_load_the_activity_contract_afresh_in_the_sandbox(monkeypatch) -> None:
    """The workflow module is imported anew inside the sandbox for every run; what it passes through must
    come from the worker's own modules, not run again per run (the contract's 13 declarations cost CPU on
    every run when ``from engine.runtime import contract`` slipped past the passthrough)."""
    import temporalio.activity

    declared: list[str] = []
    real = temporalio.activity.defn

    def counting(*args: object, **kwargs: object) -> object:
        declared.append(str(kwargs.get("name") or args))
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(temporalio.activity, "defn", counting)
    path = HISTORIES[0]
    result = await _replayer(agent_graph()).replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))
    assert result.replay_failure is None
    assert declared == []


def test_a_graph_is_compiled_once_and_each_run_gets_a_checkpointer_of_its_own(monkeypatch) -> None:
    from engine.runtime.compiler import compiled

    graph = agent_graph()
    compiles = 0
    real = StateGraph.compile

    def counting(self: StateGraph, *args: object, **kwargs: object) -> object:
        nonlocal compiles
        compiles += 1
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(StateGraph, "compile", counting)
    first, second = compiled(graph), compiled(graph)
    assert compiles == 1
    assert first.checkpointer is not None and second.checkpointer is not None
    assert first.checkpointer is not second.checkpointer
    assert compiled(agent_graph()) is not first and compiles == 2  # another graph: compiled for itself
