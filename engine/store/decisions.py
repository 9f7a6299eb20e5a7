"""Policy decisions: written only by the worker's ``evaluate_policy``, read by execution and the inbox.

Each decision is its own row, with the input the worker built, the result,
the bundle revision, and what execution binds to: the action digest, the
idempotency key and, for a gated action, the approval id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, func, or_
from sqlalchemy import select as columns  # sqlmodel's select types at most four columns
from sqlmodel import Session, col, select

from engine.runtime.payloads import PolicyDecision
from engine.store.tables import PolicyDecisionRow, RunRow, WorkflowDefinitionRow, utcnow


class DecisionRecord(BaseModel):
    """A stored policy decision, as execution and the inbox read it."""

    decision_id: str
    run_id: str
    call_id: str
    tool: str
    outcome: str
    revision: str | None
    digest: str | None
    idempotency_key: str | None
    approval_id: str | None
    cause: str | None = None
    input: dict[str, Any]
    result: dict[str, Any]
    created_at: datetime


def save_decision(session: Session, *, decision_id: str, run_id: str, call_id: str, package: str,
                  document: dict[str, Any], decision: PolicyDecision, raw: Any, latency_ms: float,
                  digest: str, idempotency_key: str, approval_id: str | None, cause: str,
                  shadow: tuple[str, PolicyDecision] | None = None) -> None:
    """Store a decision. ``decision_id`` names the activity that made it: a retry of that activity
    overwrites its own row; every other decision, a re-decision included, gets its own, with its ``cause``
    (what made the boundary decide: ``proposed``, an edit, a re-decision, the re-check before execution).
    ``result`` holds the whole decision, the times OPA was asked for it (``attempts``, which ``airlock stats``
    sums) included. ``shadow``: the workflow's shadow policy package and its decision on the same input."""
    row = session.get(PolicyDecisionRow, decision_id) or PolicyDecisionRow(
        decision_id=decision_id, run_id=run_id, call_id=call_id, tool=document["tool"]["name"],
        package=package, outcome=decision.outcome, input=document, result={})
    row.outcome, row.revision, row.input = decision.outcome, decision.revision, document
    row.result, row.raw, row.latency_ms = decision.model_dump(mode="json"), raw, latency_ms
    row.digest, row.idempotency_key, row.approval_id, row.cause = digest, idempotency_key, approval_id, cause
    if shadow is not None:
        row.shadow_package, row.shadow_outcome = shadow[0], shadow[1].outcome
        row.shadow_result = shadow[1].model_dump(mode="json")
    row.created_at = utcnow()
    session.add(row)
    session.commit()


def decision_for(session: Session, *, run_id: str, idempotency_key: str, digest: str) -> DecisionRecord | None:
    """The newest decision on exactly this action (run, idempotency key, digest), or None."""
    row = session.exec(select(PolicyDecisionRow).where(
        PolicyDecisionRow.run_id == run_id, PolicyDecisionRow.idempotency_key == idempotency_key,
        PolicyDecisionRow.digest == digest).order_by(col(PolicyDecisionRow.created_at).desc())).first()
    return DecisionRecord.model_validate(row, from_attributes=True) if row else None


def decision_for_approval(session: Session, *, approval_id: str) -> DecisionRecord | None:
    """The decision that asked for this approval, or None."""
    row = session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.approval_id == approval_id)
                       .order_by(col(PolicyDecisionRow.created_at).desc())).first()
    return DecisionRecord.model_validate(row, from_attributes=True) if row else None


def actions_decided(session: Session, *, run_id: str) -> int:
    """How many distinct actions (idempotency keys) policy has decided in a run."""
    return int(session.exec(select(func.count(func.distinct(PolicyDecisionRow.idempotency_key))).where(
        PolicyDecisionRow.run_id == run_id)).one())


def key_decided(session: Session, *, key: str) -> bool:
    """Whether policy has decided the action with this idempotency key before (an edit or a re-check)."""
    return session.exec(select(PolicyDecisionRow.decision_id).where(
        PolicyDecisionRow.idempotency_key == key)).first() is not None


def decisions_for_run(session: Session, *, run_id: str) -> list[dict[str, Any]]:
    """Every decision of a run, oldest first, as plain data."""
    rows = session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.run_id == run_id)
                        .order_by(col(PolicyDecisionRow.created_at))).all()
    return [r.model_dump(mode="json") for r in rows]


class RecordedDecision(BaseModel):
    """A recorded decision as shadow evaluation re-decides it: its input, and what was decided then."""

    decision_id: str
    run_id: str
    workflow: str | None
    tenant: str | None
    definition_hash: str | None
    tool: str
    package: str
    outcome: str
    reasons: list[str]
    input: dict[str, Any]
    created_at: datetime


def recorded_decisions(session: Session, *, since: datetime, workflow: str | None = None,
                       after: tuple[datetime, str] | None = None, limit: int = 1000) -> list[RecordedDecision]:
    """One page of recorded decisions from ``since`` on, oldest first, after ``after`` (the last page's
    ``(created_at, decision_id)``); only ``workflow``'s runs when given. Paged by the time index."""
    query = (columns(*(col(c) for c in (
                PolicyDecisionRow.decision_id, PolicyDecisionRow.run_id, RunRow.workflow, RunRow.tenant,
                RunRow.definition_hash,
                PolicyDecisionRow.tool, PolicyDecisionRow.package, PolicyDecisionRow.outcome, PolicyDecisionRow.result,
                PolicyDecisionRow.input, PolicyDecisionRow.created_at)))
             .join(RunRow, col(RunRow.run_id) == col(PolicyDecisionRow.run_id), isouter=True)
             .where(col(PolicyDecisionRow.created_at) >= since))
    if workflow is not None:
        query = query.where(col(RunRow.workflow) == workflow)
    if after is not None:
        at, decision_id = after
        query = query.where(or_(col(PolicyDecisionRow.created_at) > at,
                                and_(col(PolicyDecisionRow.created_at) == at,
                                     col(PolicyDecisionRow.decision_id) > decision_id)))
    query = query.order_by(col(PolicyDecisionRow.created_at), col(PolicyDecisionRow.decision_id)).limit(limit)
    return [RecordedDecision(decision_id=r[0], run_id=r[1], workflow=r[2], tenant=r[3], definition_hash=r[4],
                             tool=r[5], package=r[6], outcome=r[7], reasons=list((r[8] or {}).get("reasons") or []),
                             input=r[9] or {}, created_at=r[10])
            for r in session.execute(query).all()]


def approver_roles(session: Session, *, definition_hashes: list[str]) -> dict[str, str | None]:
    """Each definition's ``approval.approver_role`` (who approves when a policy names nobody)."""
    rows = session.exec(select(WorkflowDefinitionRow.definition_hash, WorkflowDefinitionRow.spec).where(
        col(WorkflowDefinitionRow.definition_hash).in_(definition_hashes))).all()
    return {h: ((spec or {}).get("approval") or {}).get("approver_role") for h, spec in rows}
