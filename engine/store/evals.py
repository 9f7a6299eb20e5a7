"""Workflow evaluations (``airlock eval``): record a version's results, read them back for the CLI and UI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from engine.store.tables import EvalCaseRow, EvalRunRow


class EvalCaseResult(BaseModel):
    """One case of an eval run, as recorded."""

    case_id: str
    run_id: str | None = None
    passed: bool
    failures: list[str] = Field(default_factory=list)
    status: str
    reason: str | None = None
    cost: float = 0.0
    latency_ms: float = 0.0
    steps: int = 0
    escalations: int = 0


class EvalRecord(BaseModel):
    """One dataset run against one workflow version, with its figures (and its cases, when asked for)."""

    eval_id: str
    comparison: str | None = None
    label: str
    dataset: str
    dataset_hash: str
    workflow: str
    version: int
    definition_hash: str
    run_workflow: str
    run_definition_hash: str
    tenant: str
    started_by: str
    cases: int
    passed: int
    success_rate: float
    cost: float
    cost_per_success: float | None = None
    escalations: int
    started_at: datetime
    finished_at: datetime
    results: list[EvalCaseResult] = Field(default_factory=list)


def record_eval(session: Session, *, record: EvalRecord) -> None:
    """Store an eval run and its cases (once: an id recorded already is an error)."""
    session.add(EvalRunRow(**record.model_dump(exclude={"results"})))
    session.flush()  # the run first: its cases refer to it
    for position, case in enumerate(record.results):
        session.add(EvalCaseRow(eval_id=record.eval_id, position=position, **case.model_dump()))
    session.commit()


def get_eval(session: Session, *, eval_id: str) -> EvalRecord | None:
    """An eval run with its cases, in the dataset's order."""
    row = session.get(EvalRunRow, eval_id)
    if row is None:
        return None
    cases = session.exec(select(EvalCaseRow).where(EvalCaseRow.eval_id == eval_id)
                         .order_by(col(EvalCaseRow.position))).all()
    return EvalRecord(**row.model_dump(), results=[EvalCaseResult(**_case(c)) for c in cases])


def recent_evals(session: Session, *, tenants: list[str] | None = None, workflow: str | None = None,
                 limit: int = 20) -> list[EvalRecord]:
    """The latest eval runs, newest first (of ``tenants`` only, when given), without their cases."""
    query = select(EvalRunRow).order_by(col(EvalRunRow.started_at).desc(), col(EvalRunRow.eval_id)).limit(limit)
    if tenants is not None:
        query = query.where(col(EvalRunRow.tenant).in_(tenants))
    if workflow:
        query = query.where(EvalRunRow.workflow == workflow)
    return [EvalRecord(**row.model_dump()) for row in session.exec(query).all()]


def _case(row: EvalCaseRow) -> dict[str, Any]:
    return row.model_dump(exclude={"eval_id", "position"})
