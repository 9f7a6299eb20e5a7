"""A custom graph: the default agent loop plus a receipt written by the boundary.

The final answer is the model's words; the receipt appended to it lists what
was actually executed, from the boundary's records, so the customer never has
to trust the model's account of what it did.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from engine.graph import AgentState, add_boundary, call_model


async def append_receipt(state: AgentState) -> dict[str, Any]:
    """Deterministic, workflow-side: no I/O, only the state."""
    done = [c for c in state.get("calls") or [] if c.get("outcome") == "executed" and c["tool"] == "issue_refund"]
    lines = [f"- refund {c['result']['refund_id']}: {c['result']['amount']} {c['result']['currency']} "
             f"on order {c['result']['order_id']}" for c in done]
    receipt = "\n\nReceipt (executed actions):\n" + ("\n".join(lines) if lines else "- none")
    return {"output": (state.get("output") or "") + receipt}


def receipt_graph() -> StateGraph:
    """call_model → boundary → … → append_receipt when the run completes."""
    graph = StateGraph(AgentState)
    graph.add_node("call_model", call_model, metadata={"execute_in": "workflow"})
    graph.add_node("append_receipt", append_receipt, metadata={"execute_in": "workflow"})
    graph.add_edge(START, "call_model")
    add_boundary(graph, after="call_model", then="call_model", end="append_receipt")
    graph.add_edge("append_receipt", END)
    return graph
