"""Graph states for the node tests: the support-refund workflow, with the fields a test sets."""

from __future__ import annotations

from typing import Any

from engine.runtime.payloads import ResolvedRun, ToolCallRecord
from engine.runtime.state import AgentState
from engine.spec import load_spec
from tests.helpers import ROOT

SPEC = load_spec(ROOT / "workflows/support_refund.yaml", project_dir=ROOT)


def state(**fields: Any) -> AgentState:
    limits = fields.pop("limits", {})
    spec = SPEC.model_copy(update={"limits": SPEC.limits.model_copy(update=limits)})
    run = ResolvedRun(run_id="r1", spec=spec, requested_by="alice", tenant="default", input={},
                      workflow_run_id="w1")
    base: dict[str, Any] = {"request": run.model_dump(mode="json"), "step": 0, "messages": [], "calls": [],
                            "proposed": []}
    return AgentState(**{**base, **fields})  # type: ignore[typeddict-item]


def call(outcome: str, step: int = 1, **fields: Any) -> dict[str, Any]:
    return ToolCallRecord(call_id=f"c{step}", step=step, index=0, tool="issue_refund", outcome=outcome,  # type: ignore[arg-type]
                          **fields).model_dump(mode="json")
