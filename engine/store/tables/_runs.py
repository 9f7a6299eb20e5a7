"""Tables of a run and its model side: the run index, model calls, the endpoints' breakers, schema checks,
prompts, definitions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from engine.store.tables._clock import utcnow


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


class ModelBreakerRow(SQLModel, table=True):
    """The circuit breaker of one model endpoint, shared by every worker (``engine.store.breakers``)."""

    __tablename__ = "model_breakers"

    endpoint_key: str = Field(primary_key=True)  # a hash of the endpoint's label, URL and key variable
    endpoint: str  # its label, as shown everywhere (never with a key)
    failures: int = 0  # in a row
    open_until: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


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
