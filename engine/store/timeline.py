"""A run's timeline: everything recorded about it, in order, as one list of entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, select

from engine.store.tables import (
    ApprovalEventRow,
    ApprovalRow,
    ModelCallRow,
    PolicyDecisionRow,
    RunRow,
    ToolExecutionRow,
    ValidationRow,
)


class TimelineEntry(BaseModel):
    """One step of a run: a model call, a validation, a policy decision, an approval event or a tool execution."""

    at: datetime
    kind: str  # model | validation | policy | approval | execution
    summary: str
    step: int | None = None
    latency_ms: float | None = None
    data: dict[str, Any] = {}


def run_timeline(session: Session, *, run_id: str) -> list[TimelineEntry]:
    """Everything recorded about a run, in order."""
    entries: list[TimelineEntry] = []
    for m in session.exec(select(ModelCallRow).where(ModelCallRow.run_id == run_id)).all():
        failed = [a for a in m.attempts if a.get("error")]
        summary = (f"{m.model} via {m.endpoint}" + (f" [{m.step_class}]" if m.step_class else "") +
                   f": {m.input_tokens} in / {m.output_tokens} out tokens, "
                   f"cost {m.cost:g}, {m.tool_calls} tool call(s) proposed")
        if m.fallback_used or failed:
            summary += " — fallback after " + "; ".join(f"{a['endpoint']}: {a['error']}" for a in failed)
        entries.append(TimelineEntry(at=m.at, kind="model", step=m.step, latency_ms=m.latency_ms, summary=summary,
                                     data=m.model_dump(mode="json", exclude={"call_key", "run_id"})))
    for v in session.exec(select(ValidationRow).where(ValidationRow.run_id == run_id)).all():
        what = "arguments of " + v.subject if v.kind == "tool_arguments" else "final answer"
        entries.append(TimelineEntry(at=v.at, kind="validation", step=v.step,
                                     summary=f"{what}: " + ("valid" if v.ok else f"invalid — {v.error}"),
                                     data=v.model_dump(mode="json", exclude={"validation_key", "run_id"})))
    for d in session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.run_id == run_id)).all():
        reasons = "; ".join(d.result.get("reasons", []))
        entries.append(TimelineEntry(
            at=d.created_at, kind="policy", step=d.input.get("run", {}).get("step"), latency_ms=d.latency_ms,
            summary=f"{d.tool}: {d.outcome} — {reasons} (revision {d.revision})",
            data={"tool": d.tool, "args": d.input.get("tool", {}).get("args"), "outcome": d.outcome,
                  "reasons": d.result.get("reasons", []), "revision": d.revision, "input": d.input}))
    for e in session.exec(select(ToolExecutionRow).where(ToolExecutionRow.run_id == run_id)).all():
        tx = e.result.get("tx_hash") if isinstance(e.result, dict) else None
        entries.append(TimelineEntry(
            at=e.started_at, kind="execution", step=_step_of(e.idempotency_key), latency_ms=e.latency_ms,
            summary=f"{e.tool}: {e.status}" + (f" — {e.error}" if e.error else "") + (f" (tx {tx})" if tx else ""),
            data={"tool": e.tool, "status": e.status, "result": e.result, "error": e.error, "attempts": e.attempts,
                  "tx_hash": tx}))
    for r in session.exec(select(ApprovalRow).where(ApprovalRow.run_id == run_id)).all():
        entries.append(TimelineEntry(at=r.created_at, kind="approval",
                                     summary=f"{r.approval_id} requested for {r.tool}: needs {r.min_approvals} of "
                                             f"{', '.join(r.approvers or []) or 'anyone'}",
                                     data={"approval_id": r.approval_id, "action": "request", "digest": r.digest}))
    for a in session.exec(select(ApprovalEventRow).where(ApprovalEventRow.run_id == run_id)).all():
        entries.append(TimelineEntry(at=a.at, kind="approval", summary=f"{a.actor} {a.action}d {a.approval_id}"
                                     + (f": {a.comment}" if a.comment else ""),
                                     data={"approval_id": a.approval_id, "actor": a.actor, "action": a.action,
                                           "digest": a.digest, "source": a.source}))
    run = session.get(RunRow, run_id)
    if run is not None and run.finished_at is not None:  # how it ended, last (also when nothing else was recorded)
        entries.append(TimelineEntry(at=max([run.finished_at, *(e.at for e in entries)], key=_naive), kind="run",
                                     summary=f"run {run.status}" + (f" — {run.reason}" if run.reason else ""),
                                     data={"status": run.status, "reason": run.reason}))
    return sorted(entries, key=_naive)


def _naive(entry: TimelineEntry | datetime) -> datetime:
    at = entry.at if isinstance(entry, TimelineEntry) else entry
    return at.replace(tzinfo=None)


def _step_of(idempotency_key: str) -> int | None:
    parts = idempotency_key.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
