"""The boundary: the deterministic checks one proposed tool call must pass.

Order: validate arguments (``arguments``, within the limits of ``inputs``),
gather facts, policy decision (``policy``, the OPA adapter, serving ``bundle``),
approval by verified people (``identity``, ``people``), execute. Decisions are
data (``decision``); only the boundary turns them into outcomes, and
``messages`` tells the model what happened.

The names below are imported on first use, so that a light module of this
package (``inputs``, which the spec loader uses) does not pull in the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "POLICY_INPUT_VERSION": "decision",
    "action_digest": "decision",
    "approval_id": "decision",
    "idempotency_key": "decision",
    "normalize_decision": "decision",
    "policy_document": "decision",
    "unavailable_decision": "decision",
    "with_approvers": "decision",
    "tool_message": "messages",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine.boundary' has no attribute {name!r}")
    return getattr(importlib.import_module(f"engine.boundary.{_EXPORTS[name]}"), name)
