"""Repository functions: keyword-only, each takes a session, none leaks rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from engine.runtime.payloads import (
    CallModelInput,
    CallModelResult,
    CloseApprovalInput,
    OpenApprovalsInput,
    PolicyDecision,
    RecordRunInput,
    ResolvedRun,
)
from engine.errors import AuthenticationError
from engine.store.decisions import decision_for_approval
from engine.spec import WorkflowSpec
from engine.store.tables import (
    ApprovalEventRow,
    ApprovalRow,
    ModelCallRow,
    PolicyDecisionRow,
    PromptVersionRow,
    RunRow,
    ToolExecutionRow,
    ValidationRow,
    WorkflowDefinitionRow,
    utcnow,
)
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
                       workflow_run_id: str, reason: str) -> None:
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
    return ResolvedRun(run_id=run_id, spec=WorkflowSpec.model_validate(definition.spec),
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


def executed_calls(session: Session, *, run_id: str) -> list[dict[str, Any]]:
    """``{tool, args}`` of a run's executions that succeeded, oldest first (for the policy input)."""
    rows = session.exec(select(ToolExecutionRow).where(ToolExecutionRow.run_id == run_id,
                                                       ToolExecutionRow.status == "succeeded")
                        .order_by(col(ToolExecutionRow.started_at))).all()
    return [{"tool": r.tool, "args": r.args} for r in rows]


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


def get_approval(session: Session, *, approval_id: str) -> ApprovalView | None:
    """One inbox item, or None."""
    row = session.get(ApprovalRow, approval_id)
    return ApprovalView.model_validate(row, from_attributes=True) if row else None


def workflow_names(session: Session, *, tenants: list[str] | None = None) -> list[str]:
    """Every workflow that has runs (of ``tenants``, when given), by name."""
    query = select(RunRow.workflow).distinct()
    if tenants is not None:
        query = query.where(col(RunRow.tenant).in_(tenants))
    return sorted(session.exec(query).all())


def get_run(session: Session, *, run_id: str) -> RunView | None:
    """One run from the index, or None."""
    row = session.get(RunRow, run_id)
    return RunView.model_validate(row, from_attributes=True) if row else None


def get_execution(session: Session, *, key: str) -> ToolExecutionRow | None:
    """The execution recorded under an idempotency key (store-internal use)."""
    return session.get(ToolExecutionRow, key)


def executions_for_run(session: Session, *, run_id: str) -> list[dict[str, Any]]:
    """Every execution of a run, as plain data."""
    rows = session.exec(select(ToolExecutionRow).where(ToolExecutionRow.run_id == run_id)).all()
    return [r.model_dump(mode="json") for r in rows]


def start_execution(session: Session, *, key: str, run_id: str, call_id: str, tool: str,
                    args: dict[str, Any], digest: str) -> None:
    """Mark an execution of the authorised action ``digest`` as started (or count one more attempt).

    Raises:
        AuthenticationError: another action already started under this key.
    """
    row = session.get(ToolExecutionRow, key)
    if row is None:
        row = ToolExecutionRow(idempotency_key=key, run_id=run_id, call_id=call_id, tool=tool, args=args,
                               status="started", digest=digest)
    elif row.digest != digest:
        raise AuthenticationError(f"another action ({row.tool}, {row.digest}) already started under {key}")
    else:
        row.attempts += 1
    session.add(row)
    session.commit()


def finish_execution(session: Session, *, key: str, ok: bool, result: Any, error: str | None,
                     latency_ms: float) -> None:
    """Record how an execution ended."""
    row = session.get(ToolExecutionRow, key)
    assert row is not None, f"execution {key} was never started"
    row.status = "succeeded" if ok else "failed"
    row.result, row.error, row.latency_ms, row.finished_at = result, error, latency_ms, utcnow()
    session.add(row)
    session.commit()


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


def prompt_versions(session: Session, *, workflow: str) -> list[PromptVersionRow]:
    """Every recorded prompt of a workflow, oldest first."""
    return list(session.exec(select(PromptVersionRow).where(PromptVersionRow.workflow == workflow)
                             .order_by(PromptVersionRow.version, PromptVersionRow.first_seen)).all())


def prompt_version(session: Session, *, workflow: str, version: int) -> PromptVersionRow | None:
    """The newest prompt recorded for one workflow version, or None."""
    rows = [v for v in prompt_versions(session, workflow=workflow) if v.version == version]
    return rows[-1] if rows else None
