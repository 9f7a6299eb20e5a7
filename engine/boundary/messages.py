"""What the model is told about each proposed call once the boundary is done."""

from __future__ import annotations

from engine.boundary.decision import canonical_json
from engine.runtime.payloads import ToolCallRecord


def tool_message(call: ToolCallRecord) -> str:
    """The tool-result text for one call: a result, or an error it can reason about."""
    reasons = "; ".join(call.decision.reasons) if call.decision and call.decision.reasons else "no reason given"
    if call.outcome == "executed" and call.edited_by:
        return canonical_json({"ok": True, "result": call.result,
                               "note": f"{call.edited_by} edited the arguments before approving; "
                                       f"executed with {canonical_json(call.args)}"})
    if call.outcome == "executed":
        return canonical_json({"ok": True, "result": call.result})
    if call.outcome == "invalid":
        return canonical_json({"ok": False, "error": f"invalid arguments: {call.error}"})
    if call.outcome == "denied":
        return canonical_json({"ok": False, "error": f"denied by policy: {reasons}"})
    if call.outcome == "rejected":
        return canonical_json({"ok": False, "error": f"rejected by approver: {call.error or 'no reason given'}"})
    if call.outcome == "expired":
        return canonical_json({"ok": False, "error": "approval expired: nobody approved this action in time"})
    if call.outcome == "failed":
        return canonical_json({"ok": False, "error": f"tool failed: {call.error}"})
    return canonical_json({"ok": False, "error": f"not executed ({call.outcome})"})
