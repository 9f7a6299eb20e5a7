"""The boundary: the deterministic checks one proposed tool call must pass.

Order: validate arguments, gather facts, policy decision, approval, execute.
Decisions are data; only the boundary turns them into outcomes.
"""

from engine.boundary.decision import (
    POLICY_INPUT_VERSION,
    action_digest,
    approval_id,
    idempotency_key,
    normalize_decision,
    policy_document,
    unavailable_decision,
    with_approvers,
)
from engine.boundary.messages import tool_message

__all__ = [
    "POLICY_INPUT_VERSION",
    "action_digest",
    "approval_id",
    "idempotency_key",
    "normalize_decision",
    "policy_document",
    "tool_message",
    "unavailable_decision",
    "with_approvers",
]
