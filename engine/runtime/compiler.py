"""Spec → LangGraph ``StateGraph``. Pure: no I/O, nothing started.

Every workflow spec runs on the same agent graph: the spec travels in the
state, so one registered graph serves them all. A Python workflow can build a
custom graph with :func:`add_boundary`, which wires the same boundary nodes.
"""

from __future__ import annotations

from typing import Any, TypeVar

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from engine.runtime import nodes
from engine.runtime.model_node import call_model
from engine.runtime.state import AgentState
from engine.spec import ResolvedSpec, WorkflowSpec
from engine.toolkit import import_object

AGENT_GRAPH = "airlock.agent"
_IN_WORKFLOW = {"execute_in": "workflow"}

G = TypeVar("G", bound=StateGraph[Any, Any, Any, Any])  # any graph; its nodes and edges are what is checked


def add_boundary(graph: G, *, after: str = "call_model", then: str = "call_model", end: str = END) -> G:
    """Add the boundary (check → approve → execute) between two nodes.

    ``after`` must leave ``proposed`` tool calls, or a ``status`` to go to
    ``end``; the boundary returns to ``then`` with the tool results appended.
    """
    graph.add_node("check_tool_calls", nodes.check_tool_calls, metadata=dict(_IN_WORKFLOW))
    graph.add_node("await_approval", nodes.await_approval, metadata=dict(_IN_WORKFLOW))
    graph.add_node("execute_tools", nodes.execute_tools, metadata=dict(_IN_WORKFLOW))
    graph.add_conditional_edges(after, nodes.route_after_model, {"end": end, "check_tool_calls": "check_tool_calls"})
    graph.add_conditional_edges("check_tool_calls", nodes.route_after_check,
                                {"await_approval": "await_approval", "execute_tools": "execute_tools"})
    graph.add_conditional_edges("await_approval", nodes.route_after_approval,
                                {"check_tool_calls": "check_tool_calls", "execute_tools": "execute_tools"})
    graph.add_conditional_edges("execute_tools", nodes.route_after_execute,
                                {"check_tool_calls": "check_tool_calls", "then": then})
    return graph


def agent_graph() -> StateGraph[AgentState]:
    """The default graph: the model proposes, the boundary decides, repeat."""
    graph = StateGraph(AgentState)
    graph.add_node("call_model", call_model, metadata=dict(_IN_WORKFLOW))
    graph.add_edge(START, "call_model")
    return add_boundary(graph)


# Each registered graph compiled once per worker process (compiling inspects every node's source: ~2 ms,
# more inside the workflow sandbox); keyed by the graph object (hashed by identity), kept for the worker's life.
_compiled: dict[StateGraph[Any, Any, Any, Any], CompiledStateGraph[Any, Any, Any, Any]] = {}


def compiled(graph: StateGraph[Any, Any, Any, Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """``graph`` compiled, with a checkpointer of its own: one run's state never meets another's.

    The compiled graph holds no state between invocations but its checkpointer, so the worker compiles
    each graph once and every run gets a shallow copy with a fresh ``InMemorySaver``. Compiling is
    deterministic; a race between two workflow tasks compiles twice and keeps one, which is harmless.
    """
    if graph not in _compiled:
        _compiled[graph] = graph.compile()
    return _compiled[graph].copy({"checkpointer": InMemorySaver()})


def graph_name(spec: WorkflowSpec) -> str:
    """The name under which the worker registers this spec's graph."""
    return f"custom:{spec.graph}" if spec.graph else AGENT_GRAPH


def build_graph(import_path: str) -> StateGraph[Any, Any, Any, Any]:
    """Import a custom graph builder ``module:function`` and call it."""
    graph = import_object(import_path)()
    if not isinstance(graph, StateGraph):
        raise TypeError(f"{import_path} must return a langgraph StateGraph, got {type(graph).__name__}")
    return graph


def initial_state(request_dump: dict[str, Any], spec: ResolvedSpec, user_message: str) -> AgentState:
    """The state a run starts from."""
    return AgentState(request=request_dump, step=0, proposed=[], calls=[], status=None, reason=None, output=None,
                      messages=[{"role": "system", "content": spec.prompt_text or ""},
                                {"role": "user", "content": user_message}])
