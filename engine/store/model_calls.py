"""Model calls, schema checks of what the model said, cost, and the prompts each workflow version ran with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from engine.runtime.activity_io import CallModelInput, CallModelResult
from engine.store.tables import ModelCallRow, PromptVersionRow, ValidationRow, utcnow


class PromptVersion(BaseModel):
    """The system prompt and tool schemas a workflow version ran with."""

    workflow: str
    version: int
    prompt_hash: str
    prompt_text: str
    tools: list[dict[str, Any]]
    first_seen: datetime


def record_model_call(session: Session, *, request: CallModelInput, result: CallModelResult) -> None:
    """Store one model call (a retried activity overwrites its own row)."""
    key = f"{request.run_id}:{request.step}"
    row = session.get(ModelCallRow, key) or ModelCallRow(call_key=key, run_id=request.run_id, step=request.step,
                                                         workflow=request.workflow, version=request.version,
                                                         tenant=request.tenant, model="", endpoint="")
    row.prompt_hash, row.model, row.endpoint = request.prompt_hash, result.model, result.provider_label
    row.fallback_used, row.attempts = result.fallback_used, [a.model_dump() for a in result.attempts]
    row.input_tokens, row.output_tokens, row.cost = result.input_tokens, result.output_tokens, result.cost
    row.latency_ms, row.tool_calls, row.at = result.latency_ms, len(result.tool_calls), utcnow()
    row.step_class = request.step_class
    session.add(row)
    session.commit()


def record_validation(session: Session, *, run_id: str, step: int, key: str, kind: str, subject: str, ok: bool,
                      error: str | None) -> None:
    """Store one schema check (a retried activity overwrites its own row)."""
    row = session.get(ValidationRow, f"{run_id}:{step}:{key}") or ValidationRow(
        validation_key=f"{run_id}:{step}:{key}", run_id=run_id, step=step, kind=kind, subject=subject, ok=ok)
    row.ok, row.error, row.at = ok, error, utcnow()
    session.add(row)
    session.commit()


def cost_today(session: Session, *, tenant: str, workflow: str) -> float:
    """Model cost of a tenant's runs of a workflow since midnight UTC."""
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    total = session.exec(select(func.coalesce(func.sum(ModelCallRow.cost), 0.0)).where(
        ModelCallRow.tenant == tenant, ModelCallRow.workflow == workflow, ModelCallRow.at >= midnight)).one()
    return float(total)


def prompt_versions(session: Session, *, workflow: str) -> list[PromptVersion]:
    """Every recorded prompt of a workflow, oldest first."""
    rows = session.exec(select(PromptVersionRow).where(PromptVersionRow.workflow == workflow)
                        .order_by(col(PromptVersionRow.version), col(PromptVersionRow.first_seen))).all()
    return [PromptVersion.model_validate(r, from_attributes=True) for r in rows]


def prompt_version(session: Session, *, workflow: str, version: int) -> PromptVersion | None:
    """The newest prompt recorded for one workflow version, or None."""
    rows = [v for v in prompt_versions(session, workflow=workflow) if v.version == version]
    return rows[-1] if rows else None
