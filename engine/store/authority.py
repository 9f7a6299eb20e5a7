"""What authorises an action: the worker's own decision records and verified people.

Execution asks here, never the workflow: a consequential action runs only if
a decision the worker stored allowed exactly its digest and idempotency key,
or asked for approval and enough verified, distinct, entitled people approved
that digest (not the requester, not anyone who edited the action).
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from engine.errors import AuthenticationError
from engine.store.repo import DecisionRecord, decision_for
from engine.store.tables import PersonAssertionRow, RunRow


class Clearance(BaseModel):
    """Whether an action may run, and why."""

    allowed: bool
    reason: str
    decision: DecisionRecord | None = None


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
    run = session.get(RunRow, run_id)
    votes = session.exec(select(PersonAssertionRow).where(PersonAssertionRow.approval_id == decided.approval_id,
                                                          PersonAssertionRow.digest == digest)).all()
    if any(v.action == "reject" for v in votes):
        return Clearance(allowed=False, reason="a person rejected this action", decision=decided)
    roles = set(decided.result.get("approvers") or [])
    needed = int(decided.result.get("min_approvals") or 1)
    barred = editors_of(session, idempotency_key=idempotency_key) | {run.requested_by if run else ""}
    people = sorted({v.subject for v in votes if v.action == "approve" and v.subject not in barred
                     and roles & set(v.roles or [])})
    if not roles or len(people) < needed:
        return Clearance(allowed=False, decision=decided,
                         reason=f"needs {needed} verified approval(s) by {', '.join(sorted(roles)) or 'nobody'}; "
                                f"has {len(people)}" + (f" ({', '.join(people)})" if people else ""))
    return Clearance(allowed=True, reason=f"approved by {', '.join(people)}", decision=decided)
