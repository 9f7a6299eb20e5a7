"""Tables of people: approvals, their events and queued decisions, signed assertions, accounts, API tokens,
browser sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from engine.store.tables._clock import utcnow


class ApprovalRow(SQLModel, table=True):
    """One gated action waiting for (or decided by) people: the inbox."""

    __tablename__ = "approvals"
    # The inbox's filter (status, the person's tenants) in its order, newest first: the page's ids and the
    # count come from this index without reading a row.
    __table_args__ = (Index("ix_approvals_inbox", "status", "tenant", "created_at", "approval_id"),)

    approval_id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    workflow: str = Field(index=True)
    version: int
    tool: str = Field(index=True)
    args: dict[str, Any] = Field(sa_column=Column(JSON))
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    model_reason: str | None = None
    policy_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    approvers: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    min_approvals: int = 1
    policy_revision: str | None = None
    digest: str
    requested_by: str
    tenant: str
    status: str = Field(index=True)
    votes: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    decided_at: datetime | None = None


class ApprovalEventRow(SQLModel, table=True):
    """One decision on a gated action: who, when, from where, on which digest."""

    __tablename__ = "approval_events"

    event_id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(index=True)
    run_id: str = Field(index=True)
    actor: str
    action: str
    digest: str
    source: str | None = None
    comment: str | None = None
    at: datetime = Field(default_factory=utcnow)


class QueuedDecisionRow(SQLModel, table=True):
    """A decision no worker took in time, accepted for delivery (a workflow signal), and what became of it.

    Written by the door the person decided through (UI, API, local CLI) before the signal is sent;
    the worker moves it on: ``queued`` → ``delivering`` (verified, being applied) → ``applied`` or
    ``refused`` (with the reason). ``withdrawn``: the signal could not be confirmed and the person was
    told it did not count, so the worker refuses it if it ever arrives. It authorises nothing: the
    run applies the signed decision itself, with the same rules as any other.

    A worker records every decision it verifies here before counting it, also one no door queued
    (``door_queued`` False: the run took it directly; the inbox does not show those), so that a door
    which queues it afterwards finds the run has it and cannot withdraw it.
    """

    __tablename__ = "queued_decisions"

    key: str = Field(primary_key=True)  # payloads.decision_key of the signed assertion's id (jti)
    approval_id: str = Field(index=True)
    run_id: str = Field(index=True)
    by: str  # the person the door authenticated
    action: str  # approve | reject | edit
    digest: str
    comment: str | None = None
    args: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    source: str | None = None
    status: str = Field(default="queued", index=True)  # queued | delivering | applied | refused | withdrawn
    reason: str | None = None  # why it was refused or withdrawn
    result: str | None = None  # what it led to, once applied: the approval's status then
    queued_at: datetime = Field(default_factory=utcnow)
    settled_at: datetime | None = None
    door_queued: bool = True  # a door queued it and told the person so; False: only the worker recorded it


class PersonAssertionRow(SQLModel, table=True):
    """A person's signed assertion, verified by the worker and used once (keyed by its id)."""

    __tablename__ = "person_assertions"

    jti: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    approval_id: str = Field(index=True)
    idempotency_key: str = Field(index=True)
    digest: str
    action: str  # approve | reject | edit
    subject: str
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    used_by: str  # the activity that used it: a retry of that activity may see it again
    at: datetime = Field(default_factory=utcnow)


class UserRow(SQLModel, table=True):
    """An approver account; the password is stored as an argon2 hash only."""

    __tablename__ = "users"

    name: str = Field(primary_key=True)
    password_hash: str
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    tenants: list[str] = Field(default_factory=lambda: ["default"], sa_column=Column(JSON))
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class ApiTokenRow(SQLModel, table=True):
    """A per-user API token, stored as its SHA-256 (the token is shown once)."""

    __tablename__ = "api_tokens"

    token_hash: str = Field(primary_key=True)
    user: str = Field(index=True)
    label: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None


class UiSessionRow(SQLModel, table=True):
    """One signed-in browser session, stored as the SHA-256 of the id its cookie carries.

    The cookie alone proves nothing: the session counts only while this row
    lives, so signing out (or a password reset) ends every copy of the cookie.
    """

    __tablename__ = "ui_sessions"

    session_hash: str = Field(primary_key=True)
    user: str = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    ended_at: datetime | None = None


class SignInFailureRow(SQLModel, table=True):
    """One sign-in attempt that has not (yet) succeeded: what throttles password guessing."""

    __tablename__ = "sign_in_failures"

    failure_id: int | None = Field(default=None, primary_key=True)
    user: str = Field(index=True)  # the name as given, normalised when it can be: unknown names count too
    address: str = Field(index=True)
    at: datetime = Field(default_factory=utcnow, index=True)
