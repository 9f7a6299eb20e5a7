"""Runs: what a worker resolved and recorded, how each run went, and the run index."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session, col, select

from engine.errors import AuthenticationError
from engine.runtime.activity_io import RecordRunInput
from engine.runtime.payloads import ResolvedRun
from engine.spec import ResolvedSpec
from engine.store.tables import PromptVersionRow, RunRow, WorkflowDefinitionRow, utcnow


class RunView(BaseModel):
    """A run as the index knows it."""

    run_id: str
    workflow: str
    version: int
    requested_by: str
    tenant: str
    status: str
    reason: str | None
    output: str | None
    result: dict[str, Any] | None = None
    started_at: datetime
    finished_at: datetime | None


def register_run(session: Session, *, run: ResolvedRun) -> None:
    """Record a run the worker resolved and verified: its definition, requester and tenant (idempotent)."""
    spec = run.spec
    if spec.definition_hash and session.get(WorkflowDefinitionRow, spec.definition_hash) is None:
        session.add(WorkflowDefinitionRow(definition_hash=spec.definition_hash, workflow=spec.name,
                                          version=spec.version, spec=spec.model_dump(mode="json")))
    if spec.prompt_hash and session.get(PromptVersionRow, (spec.name, spec.version, spec.prompt_hash)) is None:
        session.add(PromptVersionRow(workflow=spec.name, version=spec.version, prompt_hash=spec.prompt_hash,
                                     prompt_text=spec.prompt_text or "",
                                     tools=[t.model_dump(exclude={"import_path"}) for t in spec.tool_specs]))
    existing = session.get(RunRow, run.run_id)
    if existing is not None and existing.workflow_run_id != run.workflow_run_id:
        raise AuthenticationError(f"run {run.run_id} was already started by another workflow run")
    if existing is None:
        session.add(RunRow(run_id=run.run_id, workflow=spec.name, version=spec.version,
                           requested_by=run.requested_by, tenant=run.tenant, status="running",
                           prompt_hash=spec.prompt_hash, definition_hash=spec.definition_hash, input=run.input,
                           workflow_run_id=run.workflow_run_id))
    session.commit()


def record_refused_run(session: Session, *, run_id: str, workflow: str, requested_by: str, tenant: str,
                       workflow_run_id: str | None, reason: str) -> None:
    """Record a run a verified person started but the worker could not resolve: ended, with why (idempotent).

    It has no definition, so nothing is ever done for it (see :func:`resolved_run`).
    """
    if session.get(RunRow, run_id) is None:
        session.add(RunRow(run_id=run_id, workflow=workflow[:200], version=0, requested_by=requested_by,
                           tenant=tenant, status="failed", reason=reason[:2000], workflow_run_id=workflow_run_id,
                           finished_at=utcnow()))
        session.commit()


def resolved_run(session: Session, *, run_id: str) -> ResolvedRun | None:
    """A run as the worker recorded it when it started (definition, verified requester), or None."""
    row = session.get(RunRow, run_id)
    if row is None or row.definition_hash is None:
        return None
    definition = session.get(WorkflowDefinitionRow, row.definition_hash)
    if definition is None:
        return None
    return ResolvedRun(run_id=run_id, spec=ResolvedSpec.model_validate(definition.spec),
                       requested_by=row.requested_by, tenant=row.tenant, input=row.input or {},
                       workflow_run_id=row.workflow_run_id)


def record_run(session: Session, *, record: RecordRunInput) -> None:
    """Update a recorded run's status (and result once it ended)."""
    row = session.get(RunRow, record.run_id)
    if row is None:
        return
    row.status = record.status
    if record.result is not None:
        row.reason, row.output = record.result.reason, record.result.output
        row.result = record.result.model_dump(mode="json")
        row.finished_at = utcnow()
    session.add(row)
    session.commit()


def get_run(session: Session, *, run_id: str) -> RunView | None:
    """One run from the index, or None."""
    row = session.get(RunRow, run_id)
    return RunView.model_validate(row, from_attributes=True) if row else None


def workflow_names(session: Session, *, tenants: list[str] | None = None) -> list[str]:
    """Every workflow that has runs (of ``tenants``, when given), by name."""
    query = select(RunRow.workflow).distinct()
    if tenants is not None:
        query = query.where(col(RunRow.tenant).in_(tenants))
    return sorted(session.exec(query).all())
