"""Tool executions: each allowed action's execution, keyed by its idempotency key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session

from engine.errors import AuthenticationError
from engine.store.authority import Clearance, authority_for, bind_lock, release_lock
from engine.store.tables import ToolExecutionRow, utcnow


class Execution(BaseModel):
    """One execution of an allowed action, as recorded."""

    idempotency_key: str
    run_id: str
    call_id: str
    tool: str
    args: dict[str, Any]
    digest: str | None
    status: str  # started | succeeded | failed
    result: Any = None
    error: str | None = None
    attempts: int
    latency_ms: float
    started_at: datetime
    finished_at: datetime | None = None


def get_execution(session: Session, *, key: str) -> Execution | None:
    """The execution recorded under an idempotency key, or None."""
    row = session.get(ToolExecutionRow, key)
    return Execution.model_validate(row, from_attributes=True) if row else None


class Standing(BaseModel):
    """Where an action stands before it runs: its execution so far (None if it never began) and its authority."""

    execution: Execution | None
    clearance: Clearance


def standing(session: Session, *, run_id: str, key: str, digest: str) -> Standing:
    """The action's execution record and its authority (``authority.authority_for``), in one session."""
    return Standing(execution=get_execution(session, key=key),
                    clearance=authority_for(session, run_id=run_id, idempotency_key=key, digest=digest))


def start_execution(session: Session, *, key: str, run_id: str, call_id: str, tool: str,
                    args: dict[str, Any], digest: str, lease: tuple[str, str, timedelta] | None = None) -> None:
    """Mark an execution of the authorised action ``digest`` as started (or count one more attempt).

    ``lease``: ``(lock key, holder, duration)`` of the lease the action runs under; in the same transaction
    the lease is renewed and bound to this execution, so it outlives a dead worker until the execution ends.

    Raises:
        AuthenticationError: another action already started under this key.
        LeaseLostError: the lease lapsed and was taken before the execution began (nothing is written).
    """
    if lease is not None:
        bind_lock(session, key=lease[0], holder=lease[1], execution_key=key, lease=lease[2])
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
                     latency_ms: float, release: tuple[str, str] | None = None) -> None:
    """Record how an execution ended and, with ``release`` (lock key, holder), give back the lease it ran
    under in the same transaction: the account is free exactly when the record says the action ended."""
    row = session.get(ToolExecutionRow, key)
    assert row is not None, f"execution {key} was never started"
    row.status = "succeeded" if ok else "failed"
    row.result, row.error, row.latency_ms, row.finished_at = result, error, latency_ms, utcnow()
    session.add(row)
    if release is not None:
        release_lock(session, key=release[0], holder=release[1], commit=False)
    session.commit()
