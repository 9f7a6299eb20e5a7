"""Tables of workflow evaluations (``airlock eval``): one row per version evaluated, one per case run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from engine.store.tables._clock import utcnow


class EvalRunRow(SQLModel, table=True):
    """One dataset run against one workflow version, with its figures."""

    __tablename__ = "eval_runs"

    eval_id: str = Field(primary_key=True)
    comparison: str | None = Field(default=None, index=True)  # shared by the two versions of one --compare
    label: str  # how the user named the version (a spec file or a workflow name)
    dataset: str = Field(index=True)
    dataset_hash: str  # sha256 of the dataset file
    workflow: str = Field(index=True)  # the workflow evaluated (its own name, not the derived one)
    version: int
    definition_hash: str  # of the workflow version evaluated
    run_workflow: str  # the derived definition the runs used (engine.evals.derive)
    run_definition_hash: str
    tenant: str = Field(index=True)
    started_by: str
    cases: int
    passed: int
    success_rate: float
    cost: float
    cost_per_success: float | None = None
    escalations: int
    started_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime = Field(default_factory=utcnow)


class EvalCaseRow(SQLModel, table=True):
    """One case of an eval run: its run, whether it passed, and every expectation that failed."""

    __tablename__ = "eval_cases"

    eval_id: str = Field(primary_key=True, foreign_key="eval_runs.eval_id")
    case_id: str = Field(primary_key=True)
    position: int
    run_id: str | None = None
    passed: bool
    failures: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    status: str
    reason: str | None = None
    cost: float
    latency_ms: float
    steps: int
    escalations: int
