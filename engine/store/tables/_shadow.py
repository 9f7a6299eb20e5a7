"""Tables of saved shadow evaluations (``airlock policy shadow --save``): a report, and each changed decision."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from engine.store.tables._clock import utcnow


class ShadowReportRow(SQLModel, table=True):
    """One candidate policy re-deciding a window of recorded decisions: what was read and what changed."""

    __tablename__ = "shadow_reports"

    report_id: str = Field(primary_key=True)
    label: str  # what the candidate is (the folder, or --label: a branch, a pull request)
    revision: str  # the candidate bundle's revision
    since: str  # the window, as given
    workflow: str | None = None
    decided: int
    same: int
    reasons_changed: int
    transitions: dict[str, int] = Field(sa_column=Column(JSON))
    failing: dict[str, int] = Field(sa_column=Column(JSON))  # forbidden transitions that appeared
    saved_by: str
    created_at: datetime = Field(default_factory=utcnow, index=True)


class ShadowChangeRow(SQLModel, table=True):
    """A recorded decision the candidate decides otherwise, with the tenant whose run it was."""

    __tablename__ = "shadow_changes"
    __table_args__ = (Index("ix_shadow_changes_page", "report_id", "tenant", "position"),)

    report_id: str = Field(primary_key=True)
    position: int = Field(primary_key=True)
    decision_id: str
    run_id: str
    tenant: str | None = None
    workflow: str | None = None
    tool: str
    args: dict[str, Any] = Field(sa_column=Column(JSON))
    old: str
    new: str
    old_reasons: list[str] = Field(sa_column=Column(JSON))
    new_reasons: list[str] = Field(sa_column=Column(JSON))
