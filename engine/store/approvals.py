"""The inbox: gated actions waiting for people, opened and closed by the run they belong to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from engine.runtime.activity_io import CloseApprovalInput, OpenApprovalsInput
from engine.runtime.payloads import PolicyDecision
from engine.store.decisions import decision_for_approval
from engine.store.tables import ApprovalRow, RunRow, utcnow
from engine.store.users import record_event


class ApprovalView(BaseModel):
    """An inbox item as the CLI and API show it."""

    approval_id: str
    run_id: str
    workflow: str
    version: int
    tool: str
    args: dict[str, Any]
    facts: dict[str, Any]
    model_reason: str | None
    policy_reasons: list[str]
    approvers: list[str]
    min_approvals: int
    policy_revision: str | None
    digest: str
    requested_by: str
    tenant: str
    status: str
    votes: list[dict[str, Any]]
    reason: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


def open_approvals(session: Session, *, request: OpenApprovalsInput) -> int:
    """Add the inbox rows of one interrupt, from the worker's own decision records (idempotent by id).

    What a person is shown (arguments, facts, digest, approvers) comes from the
    decision the worker stored, not from the request; only the model's stated
    reason does.
    """
    run = session.get(RunRow, request.run_id)
    opened = 0
    for call in request.calls:
        if call.approval_id is None or run is None or session.get(ApprovalRow, call.approval_id) is not None:
            continue
        decided = decision_for_approval(session, approval_id=call.approval_id)
        if decided is None or decided.run_id != request.run_id or decided.outcome != "require_approval":
            continue
        decision = PolicyDecision.model_validate(decided.result)
        tool = decided.input.get("tool", {})
        session.add(ApprovalRow(
            approval_id=call.approval_id, run_id=request.run_id, workflow=run.workflow,
            version=run.version, tool=decided.tool, args=tool.get("args") or {}, facts=decided.input.get("facts") or {},
            model_reason=call.reason, policy_reasons=decision.reasons, approvers=decision.approvers,
            min_approvals=decision.min_approvals, policy_revision=decision.revision, digest=decided.digest or "",
            requested_by=run.requested_by, tenant=run.tenant, status="pending",
            expires_at=request.expires_at))
        opened += 1
    session.commit()
    return opened


def close_approval(session: Session, *, request: CloseApprovalInput) -> None:
    """Write the votes and status the workflow decided (on its own run's approvals only)."""
    row = session.get(ApprovalRow, request.approval_id)
    if row is None or row.run_id != request.run_id:
        return
    row.status, row.reason = request.status, request.reason
    row.votes = [v.model_dump(mode="json") for v in request.votes]
    if request.status != "pending":
        row.decided_at = utcnow()
    session.add(row)
    session.commit()
    for vote in request.votes:
        record_event(session, approval_id=row.approval_id, run_id=row.run_id, actor=vote.by, action=vote.decision,
                     digest=vote.digest, source=vote.source, comment=vote.comment, at=vote.at)
    if request.status == "expired":
        record_event(session, approval_id=row.approval_id, run_id=row.run_id, actor="airlock", action="expire",
                     digest=row.digest, source="approval timeout", comment=request.reason)


def list_approvals(session: Session, *, status: str | None = "pending", run_id: str | None = None,
                   limit: int = 100, tenants: list[str] | None = None) -> list[ApprovalView]:
    """Inbox items, newest first (of ``tenants`` only, when given)."""
    query = select(ApprovalRow).order_by(col(ApprovalRow.created_at).desc()).limit(limit)
    if tenants is not None:
        query = query.where(col(ApprovalRow.tenant).in_(tenants))
    if status:
        query = query.where(ApprovalRow.status == status)
    if run_id:
        query = query.where(ApprovalRow.run_id == run_id)
    return [ApprovalView.model_validate(r, from_attributes=True) for r in session.exec(query).all()]


def inbox(session: Session, *, tenants: list[str], status: str | None = "pending", workflow: str | None = None,
          tool: str | None = None, role: str | None = None, page: int = 1,
          page_size: int = 20) -> tuple[list[ApprovalView], int]:
    """One page of the inbox of ``tenants``, newest first, and how many items match in all."""
    query = select(ApprovalRow).where(col(ApprovalRow.tenant).in_(tenants)).order_by(
        col(ApprovalRow.created_at).desc())
    if status:
        query = query.where(ApprovalRow.status == status)
    if workflow:
        query = query.where(ApprovalRow.workflow == workflow)
    if tool:
        query = query.where(ApprovalRow.tool == tool)
    rows = session.exec(query).all()
    if role:  # JSON containment differs between SQLite and PostgreSQL; inboxes are small
        rows = [r for r in rows if role in (r.approvers or [])]
    start = (max(page, 1) - 1) * page_size
    return [ApprovalView.model_validate(r, from_attributes=True) for r in rows[start:start + page_size]], len(rows)


def inbox_facets(session: Session, *, tenants: list[str]) -> dict[str, list[str]]:
    """The workflows, tools and roles that pending items of ``tenants`` have, for the filters."""
    rows = session.exec(select(ApprovalRow).where(ApprovalRow.status == "pending",
                                                  col(ApprovalRow.tenant).in_(tenants))).all()
    return {"workflow": sorted({r.workflow for r in rows}), "tool": sorted({r.tool for r in rows}),
            "role": sorted({a for r in rows for a in r.approvers or []})}


def get_approval(session: Session, *, approval_id: str) -> ApprovalView | None:
    """One inbox item, or None."""
    row = session.get(ApprovalRow, approval_id)
    return ApprovalView.model_validate(row, from_attributes=True) if row else None
