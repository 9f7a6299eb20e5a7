"""A run's timeline: everything recorded about it, in order, as one list of entries.

Entries carry data only; how each reads as a sentence is ``engine.present.described``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from engine.runtime.payloads import ActionKey
from engine.store.tables import (
    ApprovalEventRow,
    ApprovalRow,
    ModelCallRow,
    PolicyDecisionRow,
    QueuedDecisionRow,
    RunRow,
    ToolExecutionRow,
    ValidationRow,
)


class TimelineEntry(BaseModel):
    """One step of a run: a model call, a validation, a policy decision, an approval event (a decision queued
    for delivery, and what became of it, among them) or a tool execution."""

    at: datetime
    kind: str  # model | validation | policy | approval | execution | run
    step: int | None = None
    latency_ms: float | None = None
    data: dict[str, Any] = {}


def run_timeline(session: Session, *, run_id: str) -> list[TimelineEntry]:
    """Everything recorded about a run, in order."""
    entries: list[TimelineEntry] = []
    for m in session.exec(select(ModelCallRow).where(ModelCallRow.run_id == run_id)).all():
        entries.append(TimelineEntry(at=m.at, kind="model", step=m.step, latency_ms=m.latency_ms,
                                     data=m.model_dump(mode="json", exclude={"call_key", "run_id"})))
    for v in session.exec(select(ValidationRow).where(ValidationRow.run_id == run_id)).all():
        entries.append(TimelineEntry(at=v.at, kind="validation", step=v.step,
                                     data=v.model_dump(mode="json", exclude={"validation_key", "run_id"})))
    for d in session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.run_id == run_id)).all():
        entries.append(TimelineEntry(
            at=d.created_at, kind="policy", step=d.input.get("run", {}).get("step"), latency_ms=d.latency_ms,
            data={"tool": d.tool, "args": d.input.get("tool", {}).get("args"), "outcome": d.outcome,
                  "reasons": d.result.get("reasons", []), "revision": d.revision, "input": d.input,
                  "cause": d.cause, "shadow": None if d.shadow_outcome is None else {
                      "package": d.shadow_package, "outcome": d.shadow_outcome,
                      "reasons": (d.shadow_result or {}).get("reasons", [])}}))
    for e in session.exec(select(ToolExecutionRow).where(ToolExecutionRow.run_id == run_id)).all():
        tx = e.result.get("tx_hash") if isinstance(e.result, dict) else None
        entries.append(TimelineEntry(
            at=e.started_at, kind="execution", step=_step_of(e.idempotency_key), latency_ms=e.latency_ms,
            data={"tool": e.tool, "status": e.status, "result": e.result, "error": e.error, "attempts": e.attempts,
                  "tx_hash": tx}))
    for r in session.exec(select(ApprovalRow).where(ApprovalRow.run_id == run_id)).all():
        entries.append(TimelineEntry(at=r.created_at, kind="approval",
                                     data={"approval_id": r.approval_id, "action": "request", "digest": r.digest,
                                           "tool": r.tool, "min_approvals": r.min_approvals,
                                           "approvers": r.approvers or []}))
    for a in session.exec(select(ApprovalEventRow).where(ApprovalEventRow.run_id == run_id)).all():
        entries.append(TimelineEntry(at=a.at, kind="approval",
                                     data={"approval_id": a.approval_id, "actor": a.actor, "action": a.action,
                                           "digest": a.digest, "source": a.source, "comment": a.comment}))
    for q in session.exec(select(QueuedDecisionRow).where(QueuedDecisionRow.run_id == run_id,
                                                          col(QueuedDecisionRow.door_queued).is_(True))).all():
        said = {"approval_id": q.approval_id, "actor": q.by, "decision": q.action, "digest": q.digest,
                "source": q.source, "comment": q.comment}
        entries.append(TimelineEntry(at=q.queued_at, kind="approval",
                                     data={**said, "action": "queue",
                                           "queued_at": f"{q.queued_at:%Y-%m-%d %H:%M:%S} UTC"}))
        if q.settled_at is not None and q.status in ("applied", "refused", "withdrawn"):
            entries.append(TimelineEntry(at=q.settled_at, kind="approval",
                                         data={**said, "action": "delivery", "status": q.status,
                                               "result": q.result, "reason": q.reason}))
    run = session.get(RunRow, run_id)
    if run is not None and run.finished_at is not None:  # how it ended, last (also when nothing else was recorded)
        entries.append(TimelineEntry(at=max([run.finished_at, *(e.at for e in entries)], key=_naive), kind="run",
                                     data={"status": run.status, "reason": run.reason}))
    return sorted(entries, key=_naive)


def _naive(entry: TimelineEntry | datetime) -> datetime:
    at = entry.at if isinstance(entry, TimelineEntry) else entry
    return at.replace(tzinfo=None)


def _step_of(idempotency_key: str) -> int | None:
    key = ActionKey.parse(idempotency_key)
    return key.step if key else None
