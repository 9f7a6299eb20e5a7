"""What a custom graph is built from (a workflow spec's ``graph:``), in one public place.

A custom graph keeps the agent loop's nodes and adds its own around them;
:func:`add_boundary` wires the boundary (validate, policy, approval, execute)
after the node that proposes calls, and the worker refuses a graph that could
reach a tool any other way. See ``workflows/graphs/receipt.py``.
"""

from engine.runtime.compiler import add_boundary
from engine.runtime.model_node import call_model, model_step
from engine.runtime.state import AgentState

__all__ = ["AgentState", "add_boundary", "call_model", "model_step"]
