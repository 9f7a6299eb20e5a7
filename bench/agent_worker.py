"""The unguarded agent the throughput benchmark also compares Airlock with: what a team builds without a
boundary. The same scripted model proposes the same ``issue_refund``; the graph executes it at once; the model
answers. Three nodes, each a Temporal activity through ``temporalio-langgraph`` (as the bare graph's): ``model``
→ ``refund`` → ``answer``. The model is called through one ``AsyncOpenAI`` client reused by the process, and the
refund is a row inserted into a SQLite file, keyed by the run, as the tool's effect. No validation, no policy, no
record beyond that row.

Airlock against it is what the boundary itself costs: validation, the policy decision, the audit trail, the
store's authority and the workflow around them, with the model and the effect the same.

``serve(ADDRESS, TASK_QUEUE, MODEL_URL, DB_FILE)`` serves it until killed (prints "worker ready"); a process
runs it as ``python -c "...from bench.agent_worker import main; main()" ARGS``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
from typing import Any, TypedDict

from langgraph.graph import StateGraph
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from langgraph.checkpoint.memory import InMemorySaver
    from openai import AsyncOpenAI
    from temporalio.langgraph import graph as registered_graph

    from bench.bare_worker import chain_of_activities, serve_graph

AGENT_GRAPH = "bench.unguarded"
REFUND_TOOL = {"type": "function", "function": {
    "name": "issue_refund", "description": "Refund part of an order.",
    "parameters": {"type": "object", "required": ["order_id", "amount", "reason"],
                   "properties": {"order_id": {"type": "string"}, "amount": {"type": "string"},
                                  "reason": {"type": "string"}}}}}


class AgentState(TypedDict, total=False):
    run_id: str
    script: str
    messages: list[dict[str, Any]]


class _Process:
    """What the process shares between activities: one model client and one connection to the refunds file."""

    client: AsyncOpenAI
    db: sqlite3.Connection
    lock = threading.Lock()


async def _complete(state: AgentState) -> dict[str, Any]:
    reply = await _Process.client.chat.completions.create(
        model=state["script"], messages=state["messages"], tools=[REFUND_TOOL])  # type: ignore[arg-type, list-item]
    message = reply.choices[0].message.model_dump(mode="json", exclude_none=True)
    return {"messages": [*state["messages"], message]}


async def model(state: AgentState) -> dict[str, Any]:
    return await _complete(state)


def _insert(key: str, args: dict[str, Any]) -> None:
    with _Process.lock:
        _Process.db.execute("INSERT OR IGNORE INTO refunds (key, order_id, amount, reason) VALUES (?, ?, ?, ?)",
                            (key, args["order_id"], args["amount"], args["reason"]))
        _Process.db.commit()


async def refund(state: AgentState) -> dict[str, Any]:
    messages = list(state["messages"])
    for call in messages[-1].get("tool_calls") or []:
        # in a thread, as Airlock's store work is: the commit waits on the disk, not on the event loop
        await asyncio.to_thread(_insert, f"{state['run_id']}:{call['id']}", json.loads(call["function"]["arguments"]))
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"refunded": True})})
    return {"messages": messages}


async def answer(state: AgentState) -> dict[str, Any]:
    return await _complete(state)


def agent_graph() -> StateGraph[Any]:
    return chain_of_activities(AgentState, model, refund, answer)


@workflow.defn(name="UnguardedAgentWorkflow")
class UnguardedAgentWorkflow:
    @workflow.run
    async def run(self, run_id: str, script: str, message: str) -> str:
        app = registered_graph(AGENT_GRAPH).compile(checkpointer=InMemorySaver())
        state = await app.ainvoke({"run_id": run_id, "script": script,
                                   "messages": [{"role": "user", "content": message}]},
                                  {"configurable": {"thread_id": run_id}})
        return str(state["messages"][-1].get("content") or "")


async def serve(address: str, task_queue: str, model_url: str, db_file: str) -> None:
    _Process.client = AsyncOpenAI(base_url=model_url, api_key="unused", max_retries=0)
    _Process.db = sqlite3.connect(db_file, check_same_thread=False)
    _Process.db.execute("PRAGMA journal_mode=WAL")
    _Process.db.execute("CREATE TABLE IF NOT EXISTS refunds (key TEXT PRIMARY KEY, order_id TEXT, amount TEXT, "
                        "reason TEXT)")
    await serve_graph(address, task_queue, AGENT_GRAPH, agent_graph(), UnguardedAgentWorkflow)


def main() -> None:
    asyncio.run(serve(*sys.argv[1:5]))
