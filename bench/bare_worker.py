"""The bare graph the throughput benchmark compares Airlock with: three no-op nodes, each a Temporal activity
through ``temporalio-langgraph``, in a workflow that only runs the graph.

``serve(ADDRESS, TASK_QUEUE)`` serves it until killed (prints "worker ready"); the nodes must come from a
named module, so a process runs it as ``python -c "...from bench.bare_worker import main; main()" ARGS``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from temporalio import workflow
from temporalio.client import Client
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from langgraph.checkpoint.memory import InMemorySaver
    from temporalio.langgraph import graph as registered_graph

BARE_GRAPH = "bench.bare"


class BareState(TypedDict, total=False):
    steps: list[str]


async def model(state: BareState) -> dict[str, Any]:
    return {"steps": [*(state.get("steps") or []), "model"]}


async def check(state: BareState) -> dict[str, Any]:
    return {"steps": [*(state.get("steps") or []), "check"]}


async def execute(state: BareState) -> dict[str, Any]:
    return {"steps": [*(state.get("steps") or []), "execute"]}


def chain_of_activities(state: type[Any], *nodes: Any) -> StateGraph[Any]:
    """START → each node in turn, each a Temporal activity → END."""
    graph = StateGraph(state)
    previous = START
    for node in nodes:
        graph.add_node(node.__name__, node, metadata={"execute_in": "activity"})
        graph.add_edge(previous, node.__name__)
        previous = node.__name__
    graph.add_edge(previous, END)
    return graph


async def serve_graph(address: str, task_queue: str, name: str, graph: StateGraph[Any], workflow_class: type) -> None:
    """Serve one workflow running one registered graph until killed; says "worker ready" once polling."""
    client = await Client.connect(address)
    plugin = LangGraphPlugin(graphs={name: graph},
                             default_activity_options={"start_to_close_timeout": timedelta(minutes=5)})
    async with Worker(client, task_queue=task_queue, workflows=[workflow_class], plugins=[plugin]):
        print("worker ready", flush=True)
        await asyncio.Event().wait()


def bare_graph() -> StateGraph[BareState]:
    return chain_of_activities(BareState, model, check, execute)


@workflow.defn(name="BareGraphWorkflow")
class BareGraphWorkflow:
    @workflow.run
    async def run(self, run_id: str) -> list[str]:
        app = registered_graph(BARE_GRAPH).compile(checkpointer=InMemorySaver())
        state = await app.ainvoke({"steps": []}, {"configurable": {"thread_id": run_id}})
        return list(state["steps"])


async def serve(address: str, task_queue: str) -> None:
    await serve_graph(address, task_queue, BARE_GRAPH, bare_graph(), BareGraphWorkflow)


def main() -> None:
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
