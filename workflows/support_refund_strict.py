"""The support-refund workflow defined in Python, with a custom graph.

Same tools and policy as support_refund.yaml; fewer tool calls allowed, and
the final answer carries a receipt of the executed refunds.
"""

from datetime import timedelta

from engine.spec import ApprovalSpec, LimitsSpec, ModelSpec, WorkflowSpec

spec = WorkflowSpec(
    name="support-refund-strict",
    version=1,
    description="Support refunds with a receipt of executed actions.",
    model=ModelSpec(provider="scripted", script="scripts/support_refund_strict.turns.yaml"),
    system_prompt_file="prompts/support_refund.md",
    tools=["tools.support:lookup_order", "tools.support:issue_refund"],
    policy="airlock.support_refund",
    limits=LimitsSpec(max_steps=5, max_tool_calls=3),
    approval=ApprovalSpec(timeout=timedelta(hours=4), approver_role="support-leads"),
    graph="workflows.graphs.receipt:receipt_graph",
)
