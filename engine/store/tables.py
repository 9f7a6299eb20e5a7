"""SQLModel tables: the run index and the audit trail.

Rows never leave the store raw: repository functions return our pydantic
models or plain dicts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now, for rows written outside workflows."""
    return datetime.now(timezone.utc)


class RunRow(SQLModel, table=True):
    """One run (a Temporal workflow), indexed for listing."""

    __tablename__ = "runs"

    run_id: str = Field(primary_key=True)
    workflow: str = Field(index=True)
    version: int
    requested_by: str
    tenant: str = Field(index=True)
    status: str = Field(index=True)
    reason: str | None = None
    prompt_hash: str | None = None
    definition_hash: str | None = None
    workflow_run_id: str | None = None  # the Temporal run that resolved it: the only one its activities serve
    input: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    output: str | None = None
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class PolicyDecisionRow(SQLModel, table=True):
    """One policy decision with its input, result and the revision that made it.

    Written only by the worker's ``evaluate_policy`` activity, which builds the
    input itself; execution looks here for its authority (``digest`` and
    ``idempotency_key``). Each re-decision of an action (edited, or its facts
    changed) is its own row.
    """

    __tablename__ = "policy_decisions"

    decision_id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    call_id: str
    tool: str
    package: str
    revision: str | None = None
    digest: str | None = Field(default=None, index=True)
    idempotency_key: str | None = Field(default=None, index=True)
    approval_id: str | None = Field(default=None, index=True)
    outcome: str
    input: dict[str, Any] = Field(sa_column=Column(JSON))
    result: dict[str, Any] = Field(sa_column=Column(JSON))
    raw: Any = Field(default=None, sa_column=Column(JSON))
    latency_ms: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)


class ApprovalRow(SQLModel, table=True):
    """One gated action waiting for (or decided by) people: the inbox."""

    __tablename__ = "approvals"

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


class ToolExecutionRow(SQLModel, table=True):
    """One execution of an allowed action, keyed by its idempotency key."""

    __tablename__ = "tool_executions"

    idempotency_key: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    call_id: str
    tool: str
    args: dict[str, Any] = Field(sa_column=Column(JSON))
    digest: str | None = None  # the authorised action it runs: a retry must be of the same one
    status: str
    result: Any = Field(default=None, sa_column=Column(JSON))
    error: str | None = None
    attempts: int = 1
    latency_ms: float = 0.0
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


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


class ChainSenderRow(SQLModel, table=True):
    """A signing account on one chain; its row is locked while a nonce is handed out."""

    __tablename__ = "chain_senders"

    chain_id: int = Field(primary_key=True)
    address: str = Field(primary_key=True)
    locked_at: datetime | None = None


class ChainTransactionRow(SQLModel, table=True):
    """One signed transaction, recorded before it is sent, keyed by the action's idempotency key."""

    __tablename__ = "chain_transactions"

    idempotency_key: str = Field(primary_key=True)
    chain_id: int = Field(index=True)
    sender: str = Field(index=True)
    nonce: int
    tx_hash: str = Field(unique=True)
    raw_tx: str
    tx: dict[str, Any] = Field(sa_column=Column(JSON))
    action: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    asset: str | None = Field(default=None, index=True)
    amount_units: str | None = None
    status: str  # signed | sent | mined | reverted | dropped
    block_number: int | None = None
    gas_used: int | None = None
    revert_reason: str | None = None
    broadcasts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    mined_at: datetime | None = None


class ModelCallRow(SQLModel, table=True):
    """One model call of a run: which model answered, from which prompt, at what cost and latency."""

    __tablename__ = "model_calls"

    call_key: str = Field(primary_key=True)  # run_id:step
    run_id: str = Field(index=True)
    step: int
    workflow: str = Field(index=True)
    version: int
    tenant: str = Field(index=True)
    prompt_hash: str | None = None
    model: str
    endpoint: str
    fallback_used: bool = False
    attempts: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    tool_calls: int = 0
    step_class: str | None = None
    at: datetime = Field(default_factory=utcnow, index=True)


class ValidationRow(SQLModel, table=True):
    """One schema check of what the model produced: a tool call's arguments, or the final answer."""

    __tablename__ = "validations"

    validation_key: str = Field(primary_key=True)  # run_id:step:call_id|output:hash of what was checked
    run_id: str = Field(index=True)
    step: int
    kind: str  # tool_arguments | output
    subject: str  # the tool, or the output model's import path
    ok: bool
    error: str | None = None
    at: datetime = Field(default_factory=utcnow)


class PromptVersionRow(SQLModel, table=True):
    """The system prompt and tool schemas a workflow version ran with (recorded when a run starts)."""

    __tablename__ = "prompt_versions"

    workflow: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    prompt_hash: str = Field(primary_key=True)
    prompt_text: str
    tools: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    first_seen: datetime = Field(default_factory=utcnow)


class WorkflowDefinitionRow(SQLModel, table=True):
    """A resolved workflow definition a worker ran, by its content hash (written by the worker only)."""

    __tablename__ = "workflow_definitions"

    definition_hash: str = Field(primary_key=True)
    workflow: str = Field(index=True)
    version: int
    spec: dict[str, Any] = Field(sa_column=Column(JSON))
    first_seen: datetime = Field(default_factory=utcnow)


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


class ActionLockRow(SQLModel, table=True):
    """A lease on what a consequential action touches (an account), held from the re-check to the effect.

    A lease, not a database lock: it is held across network calls and survives
    no longer than ``expires_at`` if its worker dies.
    """

    __tablename__ = "action_locks"

    lock_key: str = Field(primary_key=True)
    holder: str
    expires_at: datetime
    acquired_at: datetime = Field(default_factory=utcnow)
