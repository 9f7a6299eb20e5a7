"""Saved shadow evaluations: written by ``airlock policy shadow --save``, read by the reviewers' pages.

A report's changed decisions carry the tenant of the run they came from: a
reviewer sees the figures of the whole report and the changes of their own
tenants only (like every run, approval and statistic in the UI).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, select

from engine.store.tables import ShadowChangeRow, ShadowReportRow


class SavedChange(BaseModel):
    """One changed decision of a saved report."""

    position: int
    decision_id: str
    run_id: str
    tenant: str | None
    workflow: str | None
    tool: str
    args: dict[str, Any]
    old: str
    new: str
    old_reasons: list[str]
    new_reasons: list[str]

    @property
    def transition(self) -> str:
        return f"{self.old}->{self.new}"


class SavedReport(BaseModel):
    """A saved report's figures."""

    report_id: str
    label: str
    revision: str
    since: str
    workflow: str | None
    decided: int
    same: int
    reasons_changed: int
    transitions: dict[str, int]
    failing: dict[str, int]
    saved_by: str
    created_at: datetime


def save_report(session: Session, *, label: str, revision: str, since: str, workflow: str | None, decided: int,
                same: int, reasons_changed: int, transitions: dict[str, int], failing: dict[str, int],
                saved_by: str, changes: list[dict[str, Any]]) -> str:
    """Store a report and its changed decisions (each a :class:`SavedChange`'s fields less ``position``);
    its new id."""
    report_id = "shr_" + secrets.token_hex(8)
    session.add(ShadowReportRow(report_id=report_id, label=label, revision=revision, since=since, workflow=workflow,
                                decided=decided, same=same, reasons_changed=reasons_changed,
                                transitions=transitions, failing=failing, saved_by=saved_by))
    session.add_all(ShadowChangeRow(report_id=report_id, position=i, **change) for i, change in enumerate(changes))
    session.commit()
    return report_id


def recent_reports(session: Session, *, limit: int = 50) -> list[SavedReport]:
    """The newest saved reports first."""
    rows = session.exec(select(ShadowReportRow).order_by(col(ShadowReportRow.created_at).desc()).limit(limit)).all()
    return [SavedReport.model_validate(r, from_attributes=True) for r in rows]


def get_report(session: Session, *, report_id: str) -> SavedReport | None:
    row = session.get(ShadowReportRow, report_id)
    return SavedReport.model_validate(row, from_attributes=True) if row else None


def report_changes(session: Session, *, report_id: str, tenants: list[str], transition: str | None = None,
                   offset: int = 0, limit: int = 50) -> tuple[list[SavedChange], int]:
    """One page of a report's changes in runs of ``tenants`` (of one ``transition`` when given), and how many
    there are in all. A page past the last is empty."""
    where: list[ColumnElement[bool]] = [col(ShadowChangeRow.report_id) == report_id,
                                        col(ShadowChangeRow.tenant).in_(tenants)]
    if transition:
        old, _, new = transition.partition("->")
        where += [col(ShadowChangeRow.old) == old, col(ShadowChangeRow.new) == new]
    total = session.exec(select(func.count()).select_from(ShadowChangeRow).where(*where)).one()
    if offset >= total:  # nothing to read (and no OFFSET beyond what the database's integers hold)
        return [], int(total)
    rows = session.exec(select(ShadowChangeRow).where(*where).order_by(col(ShadowChangeRow.position))
                        .offset(offset).limit(limit)).all()
    return [SavedChange.model_validate(r, from_attributes=True) for r in rows], int(total)
