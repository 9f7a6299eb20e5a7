"""The inbox: gated actions waiting for people, opened and closed by the run they belong to, and the
decisions on them that wait for a worker (queued for delivery), with what became of each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Text, cast, exists, func, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine.runtime.activity_io import CloseApprovalInput, OpenApprovalsInput
from engine.runtime.payloads import PolicyDecision
from engine.store.decisions import decision_for_approval
from engine.store.tables import ApprovalRow, QueuedDecisionRow, RunRow, utcnow
from engine.store.users import record_event

DeliveryStatus = Literal["queued", "delivering", "applied", "refused", "withdrawn"]
WAITING: tuple[DeliveryStatus, ...] = ("queued", "delivering")  # accepted for delivery, not applied yet
# Newest first; the id breaks ties between items made at the same instant, so pages neither repeat nor skip one.
_NEWEST_FIRST = (col(ApprovalRow.created_at).desc(), col(ApprovalRow.approval_id).desc())


class QueuedDecision(BaseModel):
    """A decision accepted for delivery while no worker took it, and what became of it."""

    key: str
    approval_id: str
    run_id: str
    by: str
    action: str
    digest: str
    comment: str | None = None
    args: dict[str, Any] | None = None
    source: str | None = None
    status: DeliveryStatus
    reason: str | None = None
    result: str | None = None
    queued_at: datetime
    settled_at: datetime | None = None
    door_queued: bool = True  # False: no door queued it; only the worker that took it recorded it

    @property
    def waiting(self) -> bool:
        """Accepted for delivery and not applied (nor refused) yet."""
        return self.status in WAITING


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
    queued: list[QueuedDecision] = Field(default_factory=list)  # decisions sent while no worker was there
    # Where each argument came from, as the policy saw it (``input.provenance`` of the decision that asked for
    # this approval); shown to whoever decides. Filled for one item (``get_approval``), not for inbox pages.
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def waiting(self) -> list[QueuedDecision]:
        """Decisions accepted for delivery that no worker has applied yet."""
        return [q for q in self.queued if q.waiting]


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
    if request.status != "pending":
        _settle_waiting(session, row, request)


def _settle_waiting(session: Session, row: ApprovalRow, request: CloseApprovalInput) -> None:
    """Decisions on a closed approval that wait for delivery, settled now: one a worker took whose vote the
    run counted is applied; any other can no longer count (the run's own word, when it comes, replaces
    this one's reason). So none is left waiting for good, even if the run never settles it itself."""
    counted = {(v.by, v.decision, v.digest, v.comment, v.source) for v in request.votes}
    waiting = session.exec(select(QueuedDecisionRow).where(QueuedDecisionRow.approval_id == row.approval_id,
                                                          col(QueuedDecisionRow.status).in_(WAITING))).all()
    for queued in waiting:
        if (queued.status == "delivering"
                and (queued.by, queued.action, queued.digest, queued.comment, queued.source) in counted):
            queued.status, queued.result = "applied", request.status
        else:
            queued.status = "refused"
            queued.reason = f"approval {row.approval_id} was {request.status} before this decision reached the run"
        queued.settled_at = utcnow()
        session.add(queued)
    session.commit()


def list_approvals(session: Session, *, status: str | None = "pending", run_id: str | None = None,
                   limit: int = 100, tenants: list[str] | None = None) -> list[ApprovalView]:
    """Inbox items, newest first (of ``tenants`` only, when given)."""
    query = select(ApprovalRow).order_by(*_NEWEST_FIRST).limit(limit)
    if tenants is not None:
        query = query.where(col(ApprovalRow.tenant).in_(tenants))
    if status:
        query = query.where(ApprovalRow.status == status)
    if run_id:
        query = query.where(ApprovalRow.run_id == run_id)
    return _views(session, session.exec(query).all())


def inbox(session: Session, *, tenants: list[str], status: str | None = "pending", workflow: str | None = None,
          tool: str | None = None, role: str | None = None, page: int = 1,
          page_size: int = 20) -> tuple[list[ApprovalView], int]:
    """One page of the inbox of ``tenants``, newest first, and how many items match in all.

    Filtered, counted and paged in SQL, and only the page's rows read whole. Without a workflow, tool or
    role filter the count and the page's ids come from the ``ix_approvals_inbox`` index alone. A page past
    the last is empty.
    """
    matches: list[ColumnElement[bool]] = [col(ApprovalRow.tenant).in_(tenants)]
    if status:
        matches.append(col(ApprovalRow.status) == status)
    if workflow:
        matches.append(col(ApprovalRow.workflow) == workflow)
    if tool:
        matches.append(col(ApprovalRow.tool) == tool)
    if role:
        matches.append(_names_approver(session, role))
    total = session.exec(select(func.count()).select_from(ApprovalRow).where(*matches)).one()
    start = (max(page, 1) - 1) * page_size
    if start >= total:  # nothing to read (and no OFFSET beyond what the database's integers hold)
        return [], total
    ids = select(ApprovalRow.approval_id).where(*matches).order_by(*_NEWEST_FIRST).offset(start).limit(page_size)
    rows = session.exec(select(ApprovalRow).where(col(ApprovalRow.approval_id).in_(ids)).order_by(*_NEWEST_FIRST))
    return _views(session, rows.all()), total


def _names_approver(session: Session, role: str) -> ColumnElement[bool]:
    """Whether an approval's ``approvers`` (a JSON list) holds ``role``, in the database's own JSON terms.

    No index serves it: each row the other filters leave is read and its list looked into.
    """
    approvers = col(ApprovalRow.approvers)
    if session.get_bind().dialect.name == "postgresql":
        return cast(approvers, JSONB).contains([role])
    each = func.json_each(approvers).table_valued("value")
    return exists().select_from(each).where(each.c.value == role)


def inbox_facets(session: Session, *, tenants: list[str]) -> dict[str, list[str]]:
    """The workflows, tools and roles that pending items of ``tenants`` have, for the filters.

    One pass in SQL over the distinct (workflow, tool, approver list) combinations, which are few however
    many items wait; the roles are read out of each approver list here.
    """
    combinations = session.exec(select(col(ApprovalRow.workflow), col(ApprovalRow.tool),
                                       cast(col(ApprovalRow.approvers), Text))
                                .where(col(ApprovalRow.status) == "pending", col(ApprovalRow.tenant).in_(tenants))
                                .distinct()).all()
    return {"workflow": sorted({workflow for workflow, _, _ in combinations}),
            "tool": sorted({tool for _, tool, _ in combinations}),
            "role": sorted({role for _, _, approvers in combinations if approvers
                            for role in json.loads(approvers) or []})}


def get_approval(session: Session, *, approval_id: str) -> ApprovalView | None:
    """One inbox item, or None."""
    row = session.get(ApprovalRow, approval_id)
    if row is None:
        return None
    decided = decision_for_approval(session, approval_id=approval_id)
    seen = decided.input.get("provenance") if decided is not None else None
    return _views(session, [row])[0].model_copy(update={"provenance": seen if isinstance(seen, dict) else {}})


def _views(session: Session, rows: Sequence[ApprovalRow]) -> list[ApprovalView]:
    """Inbox items with the decisions doors queued on them (oldest first)."""
    ids = [r.approval_id for r in rows]
    queued: dict[str, list[QueuedDecision]] = {i: [] for i in ids}
    if ids:
        found = session.exec(select(QueuedDecisionRow).where(col(QueuedDecisionRow.approval_id).in_(ids),
                                                             col(QueuedDecisionRow.door_queued).is_(True))
                             .order_by(col(QueuedDecisionRow.queued_at))).all()
        for q in found:
            queued[q.approval_id].append(QueuedDecision.model_validate(q, from_attributes=True))
    return [ApprovalView.model_validate(r, from_attributes=True).model_copy(update={"queued": queued[r.approval_id]})
            for r in rows]


# --- decisions queued for delivery ------------------------------------------------------------------------


def queue_decision(session: Session, *, key: str, approval_id: str, run_id: str, by: str, action: str,
                   digest: str, comment: str | None = None, args: dict[str, Any] | None = None,
                   source: str | None = None) -> QueuedDecision:
    """Record that a decision was accepted for delivery (before it is sent); the same key again is a no-op.

    The door that authenticated the person writes it; its time is when the decision was made, which the
    worker judges the assertion's expiry by (``queued_decision``). A decision a worker took already (the
    update, late) is recorded by then: it is marked as queued too, and its status says how it went.
    """
    if session.get(QueuedDecisionRow, key) is None:
        session.add(QueuedDecisionRow(key=key, approval_id=approval_id, run_id=run_id, by=by, action=action,
                                      digest=digest, comment=comment, args=args, source=source))
        try:
            session.commit()
        except IntegrityError:  # the same decision, recorded at the same instant (a retry, or the worker)
            session.rollback()
    session.execute(update(QueuedDecisionRow).where(col(QueuedDecisionRow.key) == key,
                                                    col(QueuedDecisionRow.door_queued).is_(False))
                    .values(door_queued=True))
    session.commit()
    session.expire_all()
    found = queued_decision(session, key=key)
    assert found is not None
    return found


def queued_decision(session: Session, *, key: str) -> QueuedDecision | None:
    """One queued decision by its key, or None."""
    row = session.get(QueuedDecisionRow, key)
    return QueuedDecision.model_validate(row, from_attributes=True) if row else None


def queued_by(session: Session, *, approval_id: str, person: str) -> list[QueuedDecision]:
    """``person``'s decisions on this approval that wait for delivery."""
    rows = session.exec(select(QueuedDecisionRow).where(QueuedDecisionRow.approval_id == approval_id,
                                                        QueuedDecisionRow.by == person,
                                                        col(QueuedDecisionRow.status).in_(WAITING),
                                                        col(QueuedDecisionRow.door_queued).is_(True))).all()
    return [QueuedDecision.model_validate(r, from_attributes=True) for r in rows]


def _move(session: Session, key: str, allowed_from: tuple[str, ...], **changes: Any) -> QueuedDecision | None:
    """Move a queued decision on, only from ``allowed_from`` (one atomic UPDATE: the worker and the door
    race for it); the row as it stands afterwards, or None when there is none."""
    session.execute(update(QueuedDecisionRow).where(col(QueuedDecisionRow.key) == key,
                                                    col(QueuedDecisionRow.status).in_(allowed_from))
                    .values(**changes))
    session.commit()
    session.expire_all()
    return queued_decision(session, key=key)


def claim_delivery(session: Session, *, key: str, approval_id: str, run_id: str, by: str, action: str, digest: str,
                   comment: str | None = None, args: dict[str, Any] | None = None,
                   source: str | None = None) -> QueuedDecision:
    """The worker takes a decision it has verified, before it counts: a queued one moves on (``queued`` →
    ``delivering``); one no door queued is recorded as ``delivering`` (``door_queued`` False), so that a
    door which queues it later (its update was taken just as the door stopped waiting) cannot withdraw it.
    A retry of the same step finds it ``delivering``. The row afterwards: its status says whether the claim
    held (``withdrawn`` or ``refused``: it did not, and the decision must not count)."""
    if session.get(QueuedDecisionRow, key) is None:
        session.add(QueuedDecisionRow(key=key, approval_id=approval_id, run_id=run_id, by=by, action=action,
                                      digest=digest, comment=comment, args=args, source=source,
                                      status="delivering", door_queued=False))
        try:
            session.commit()
        except IntegrityError:  # the door queued it at the same instant: claim that record below
            session.rollback()
    found = queued_decision(session, key=key)
    assert found is not None
    if (found.approval_id, found.run_id) != (approval_id, run_id):  # recorded for another: not this one's to take
        return found
    taken = _move(session, key, ("queued",), status="delivering")
    assert taken is not None
    return taken


def settle_decision(session: Session, *, key: str, status: Literal["applied", "refused"], reason: str | None = None,
                    result: str | None = None) -> QueuedDecision | None:
    """What the run made of a queued decision: applied (with the approval's status then) or refused (why).

    Applied is final (a copy of its assertion refused later changes nothing), and so is withdrawn (the run
    refuses those anyway); a refusal recorded when the approval closed gives way to the run's own word.
    """
    return _move(session, key, ("queued", "delivering", "refused"), status=status, reason=reason, result=result,
                 settled_at=utcnow())


def withdraw_decision(session: Session, *, key: str, reason: str) -> QueuedDecision | None:
    """The door could not confirm delivery: withdraw the decision unless a worker took it already.

    After ``withdrawn`` the worker refuses it if it ever arrives, so the person can be told it did not
    count; any other status means the run has it (and the row says how it went).
    """
    return _move(session, key, ("queued",), status="withdrawn", reason=reason, settled_at=utcnow())
