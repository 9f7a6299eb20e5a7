"""What authorises an action: the worker's own decision records and verified people.

Execution asks here, never the workflow: a consequential action runs only if
a decision the worker stored allowed exactly its digest and idempotency key,
or asked for approval and enough verified, distinct, entitled people approved
that digest (not the requester, not anyone who edited the action).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine.boundary.people import decision_refusal
from engine.errors import AuthenticationError, LeaseLostError
from engine.runtime.payloads import PolicyDecision
from engine.store.decisions import DecisionRecord, decision_for
from engine.store.tables import ActionLockRow, ApprovalRow, PersonAssertionRow, RunRow, ToolExecutionRow, utcnow
from engine.store.users import get_user


class Clearance(BaseModel):
    """Whether an action may run, and why."""

    allowed: bool
    reason: str
    decision: DecisionRecord | None = None
    approved_by: list[str] = []  # the verified, entitled people whose approvals clear it


def use_assertion(session: Session, *, jti: str, run_id: str, approval_id: str, idempotency_key: str, digest: str,
                  action: str, subject: str, roles: list[str], used_by: str) -> None:
    """Record a verified assertion; each is good for one use.

    Raises:
        AuthenticationError: it was used already (by anything but a retry of ``used_by``).
    """
    existing = session.get(PersonAssertionRow, jti)
    if existing is None:
        session.add(PersonAssertionRow(jti=jti, run_id=run_id, approval_id=approval_id,
                                       idempotency_key=idempotency_key, digest=digest, action=action,
                                       subject=subject, roles=roles, used_by=used_by))
        try:
            session.commit()
            return
        except IntegrityError:  # the same assertion, at the same instant, somewhere else
            session.rollback()
            existing = session.get(PersonAssertionRow, jti)
    if existing is None or existing.used_by != used_by:
        raise AuthenticationError("this signed assertion was already used; decide again")


def editors_of(session: Session, *, idempotency_key: str) -> set[str]:
    """Everyone whose verified edit changed this action (any revision)."""
    rows = session.exec(select(PersonAssertionRow).where(PersonAssertionRow.idempotency_key == idempotency_key,
                                                         PersonAssertionRow.action == "edit")).all()
    return {r.subject for r in rows}


def authority_for(session: Session, *, run_id: str, idempotency_key: str, digest: str) -> Clearance:
    """May the action with this digest and key run? Only the store's own records answer."""
    decided = decision_for(session, run_id=run_id, idempotency_key=idempotency_key, digest=digest)
    if decided is None:
        return Clearance(allowed=False, reason=f"no policy decision on record for action {digest}")
    if decided.outcome == "allow":
        return Clearance(allowed=True, reason="allowed by policy", decision=decided)
    if decided.outcome != "require_approval" or not decided.approval_id:
        return Clearance(allowed=False, reason=f"policy decided {decided.outcome}", decision=decided)
    approval = session.get(ApprovalRow, decided.approval_id)
    if approval is None or approval.run_id != run_id or _aware(approval.expires_at) <= utcnow():
        return Clearance(allowed=False, decision=decided,
                         reason=f"approval {decided.approval_id} was never opened or has expired")
    subjects = session.exec(select(PersonAssertionRow.subject).where(
        PersonAssertionRow.approval_id == decided.approval_id).distinct()).all()
    entitled = _entitled(session, run_id=run_id, idempotency_key=idempotency_key, names=set(subjects),
                         approvers=list(decided.result.get("approvers") or []))
    votes = session.exec(select(PersonAssertionRow).where(PersonAssertionRow.approval_id == decided.approval_id,
                                                          PersonAssertionRow.digest == digest)).all()
    if any(v.action == "reject" and v.subject in entitled for v in votes):
        return Clearance(allowed=False, reason="a person rejected this action", decision=decided)
    people = sorted({v.subject for v in votes if v.action == "approve" and v.subject in entitled})
    needed = int(decided.result.get("min_approvals") or 1)
    if len(people) < needed:
        roles = ", ".join(decided.result.get("approvers") or []) or "nobody"
        return Clearance(allowed=False, decision=decided,
                         reason=f"needs {needed} verified approval(s) by {roles}; has {len(people)}"
                                + (f" ({', '.join(people)})" if people else ""))
    return Clearance(allowed=True, reason=f"approved by {', '.join(people)}", decision=decided, approved_by=people)


def uncovered(session: Session, *, run_id: str, idempotency_key: str, approved_by: list[str],
              decision: PolicyDecision, approved_reasons: list[str]) -> str | None:
    """Why the approvals already granted for an action do not satisfy a fresh decision on it, or None.

    The re-check before execution asks this when the policy, deciding again on fresh facts, still wants
    approval: it must want it for reasons the approvers were shown (``approved_reasons``: those of the
    decision they approved; a new reason is for a person to weigh), and the people who approved exactly
    these arguments count when they hold one of the fresh decision's approver roles (and may decide it:
    not the requester, not an editor), and there are enough.
    """
    if decision.outcome == "allow":
        return None
    if decision.outcome != "require_approval":
        return f"policy decided {decision.outcome}"
    if unseen := [r for r in decision.reasons if r not in approved_reasons]:
        return f"it now asks approval for what the approvers were not shown: {'; '.join(unseen)}"
    counted = _entitled(session, run_id=run_id, idempotency_key=idempotency_key, names=set(approved_by),
                        approvers=decision.approvers)
    if len(counted) >= decision.min_approvals:
        return None
    return (f"needs {decision.min_approvals} approval(s) by {', '.join(decision.approvers) or 'nobody'}; "
            f"the approvals given count {len(counted)}" + (f" ({', '.join(sorted(counted))})" if counted else ""))


def _entitled(session: Session, *, run_id: str, idempotency_key: str, names: set[str],
              approvers: list[str]) -> set[str]:
    """Which of ``names`` may decide this action now: the rule of ``decision_refusal``, on today's user store."""
    run = session.get(RunRow, run_id)
    editors = editors_of(session, idempotency_key=idempotency_key)
    entitled = set()
    for name in sorted(names):
        person = get_user(session, name=name)
        if person is None or (run is not None and run.tenant not in person.tenants):
            continue  # disabled, or no longer in the run's tenant
        if decision_refusal(person=name, roles=person.roles, requester=run.requested_by if run else "",
                            editors=editors, approvers=approvers) is None:
            entitled.add(name)
    return entitled


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class LeaseHeld(BaseModel):
    """Who keeps a lease: an activity (``holder``) of run ``run_id`` (Temporal run ``workflow_run_id``)."""

    holder: str
    run_id: str
    workflow_run_id: str | None


class LeaseAnswer(BaseModel):
    """What ``take_lock`` did. ``kept_for``: the lease ran out but an execution began under it and is not
    finished; it is taken over (``take_lock(take_over=...)``) only once that execution's run is closed."""

    taken: bool
    kept_for: LeaseHeld | None = None


def take_lock(session: Session, *, key: str, holder: str, lease: timedelta,
              take_over: str | None = None) -> LeaseAnswer:
    """Take (or renew) the lease on ``key`` for ``holder``; not taken while someone else holds it.

    An expired lease is taken over (its worker died or stalled past it) unless an execution began under it
    and is unfinished: that execution's retry resumes without a re-check, so nothing else may act on the
    account first. Such a lease is taken over only when its holder is named in ``take_over``, which the
    caller does once it knows the holder's run is closed (no retry will come).
    """
    now = utcnow()
    row = session.get(ActionLockRow, key)
    if row is not None and row.holder != holder and _aware(row.expires_at) < now:
        unfinished = _unfinished(session, row.holder, row.execution_key)
        if unfinished is not None and row.holder != take_over:
            return LeaseAnswer(taken=False, kept_for=unfinished)
        # Only the lease as read goes: one its holder bound (or renewed) meanwhile stays, and the insert
        # below then finds it.
        bound = col(ActionLockRow.execution_key)
        session.execute(delete(ActionLockRow).where(
            col(ActionLockRow.lock_key) == key, col(ActionLockRow.holder) == row.holder,
            col(ActionLockRow.expires_at) < now,
            bound.is_(None) if row.execution_key is None else bound == row.execution_key))
        session.commit()
        row = None
    if row is None:
        session.add(ActionLockRow(lock_key=key, holder=holder, expires_at=now + lease))
        try:
            session.commit()
            return LeaseAnswer(taken=True)
        except IntegrityError:  # someone took it at the same instant
            session.rollback()
            return LeaseAnswer(taken=False)
    if row.holder != holder:
        return LeaseAnswer(taken=False)
    row.expires_at = now + lease
    session.add(row)
    session.commit()
    return LeaseAnswer(taken=True)


def _started(session: Session, execution_key: str | None) -> ToolExecutionRow | None:
    """The execution ``execution_key`` while it has begun and not ended."""
    execution = session.get(ToolExecutionRow, execution_key) if execution_key else None
    return execution if execution is not None and execution.status == "started" else None


def _unfinished(session: Session, holder: str, execution_key: str | None) -> LeaseHeld | None:
    """``holder`` and the run of the execution ``execution_key``, while that execution has begun and not ended."""
    if (execution := _started(session, execution_key)) is None:
        return None
    run = session.get(RunRow, execution.run_id)
    return LeaseHeld(holder=holder, run_id=execution.run_id, workflow_run_id=run.workflow_run_id if run else None)


class KeptLease(BaseModel):
    """A lease past its time, kept because an execution began under it and has not ended."""

    lock_key: str
    run_id: str
    tool: str
    began_at: datetime
    expired_at: datetime


def kept_leases(session: Session) -> list[KeptLease]:
    """Leases past their time kept for unfinished executions, oldest first (``airlock doctor``): actions on
    what they cover wait for those executions' retries, or for their runs to close."""
    now, kept = utcnow(), []
    for row in session.exec(select(ActionLockRow).where(col(ActionLockRow.expires_at) < now,
                                                        col(ActionLockRow.execution_key).is_not(None))).all():
        if (execution := _started(session, row.execution_key)) is not None:
            kept.append(KeptLease(lock_key=row.lock_key, run_id=execution.run_id, tool=execution.tool,
                                  began_at=_aware(execution.started_at), expired_at=_aware(row.expires_at)))
    return sorted(kept, key=lambda k: k.began_at)


def bind_lock(session: Session, *, key: str, holder: str, execution_key: str, lease: timedelta) -> None:
    """Name the execution that begins under ``holder``'s lease, and renew it (in the caller's transaction,
    not committed). One conditional UPDATE: it binds ``holder``'s own row or nothing, whoever writes at the
    same instant.

    Raises:
        LeaseLostError: ``holder`` no longer holds the lease (it lapsed and was taken): decide again.
    """
    bound = session.execute(update(ActionLockRow).where(
        col(ActionLockRow.lock_key) == key, col(ActionLockRow.holder) == holder).values(
        execution_key=execution_key, expires_at=utcnow() + lease))
    if getattr(bound, "rowcount", 0) != 1:
        raise LeaseLostError(f"the lease on {key} lapsed before the action began; it is decided again")


def release_lock(session: Session, *, key: str, holder: str, commit: bool = True) -> None:
    """Give the lease back (only its holder can); ``commit=False`` leaves it to the caller's transaction."""
    session.execute(delete(ActionLockRow).where(col(ActionLockRow.lock_key) == key,
                                                col(ActionLockRow.holder) == holder))
    if commit:
        session.commit()


def release_held(session: Session, *, holder: str, ended: bool) -> int:
    """Give back the leases ``holder`` (an activity that gave up) holds; how many there were.

    ``ended``: its last attempt ended (raised), so nothing of it runs any more: the leases go now. Otherwise
    (the attempt timed out, or was cancelled) its thread may still be running the tool: the leases are only
    unbound from their executions and lapse at their time, as a dead worker's would.
    """
    mine = col(ActionLockRow.holder) == holder
    changed = session.execute(delete(ActionLockRow).where(mine) if ended
                              else update(ActionLockRow).where(mine).values(execution_key=None))
    session.commit()
    return int(getattr(changed, "rowcount", 0) or 0)
