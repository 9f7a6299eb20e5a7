"""Tables of an action's path to its effect: policy decisions, executions, action leases, chain transactions.

What makes an effect happen at most once, on the authority of a recorded decision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from engine.store.tables._clock import utcnow


class PolicyDecisionRow(SQLModel, table=True):
    """One policy decision with its input, result and the revision that made it.

    Written only by the worker's ``evaluate_policy`` activity, which builds the
    input itself; execution looks here for its authority (``digest`` and
    ``idempotency_key``). Each re-decision of an action (edited, or its facts
    changed) is its own row.
    """

    __tablename__ = "policy_decisions"
    __table_args__ = (Index("ix_policy_decisions_time", "created_at", "decision_id"),)  # shadow evaluation's pages

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
    # What made the boundary decide: "proposed", "edited by bob", "re-decided: …", "re-check before execution: …"
    cause: str | None = None
    # The workflow's shadow_policy on the same input: recorded, never obeyed (None: no shadow policy)
    shadow_package: str | None = None
    shadow_outcome: str | None = None
    shadow_result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


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


class ActionLockRow(SQLModel, table=True):
    """A lease on what a consequential action touches (an account), held from the re-check to the effect.

    A lease, not a database lock: it is held across network calls. If its worker dies it lapses at
    ``expires_at``, unless the action's execution began under it (``execution_key``): then it is kept
    until that execution ends, its run gives it back, or its run is closed, because the execution's retry
    resumes without deciding again.
    """

    __tablename__ = "action_locks"

    lock_key: str = Field(primary_key=True)
    holder: str
    expires_at: datetime
    acquired_at: datetime = Field(default_factory=utcnow)
    execution_key: str | None = None  # the execution (idempotency key) that began under this lease


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
