"""Re-deciding recorded traffic with a candidate policy: what the CLI, the UI and the benchmark call.

Reads the store's recorded decisions page by page (the time index), each
page re-decided by :class:`engine.boundary.shadow.Candidate`, into one
:class:`engine.boundary.shadow.Report`.
"""

from __future__ import annotations

from datetime import datetime

from engine.boundary.shadow import Candidate, Item, Report
from engine.store import decisions
from engine.store.db import Database

PAGE = 2000  # recorded decisions read (and re-decided) at a time


def shadow_report(db: Database, candidate: Candidate, *, since: datetime, workflow: str | None = None,
                  page_size: int = PAGE) -> Report:
    """What ``candidate`` would have decided on every decision recorded since ``since`` (``workflow``'s only).

    Raises:
        ShadowError: the candidate cannot decide (see ``Candidate.decide``).
    """
    report = Report(revision=candidate.revision)
    roles: dict[str, str | None] = {}
    after = None
    while page := db.call(decisions.recorded_decisions, since=since, workflow=workflow, after=after,
                          limit=page_size):
        unknown = sorted({r.definition_hash for r in page if r.definition_hash and r.definition_hash not in roles})
        if unknown:
            roles.update(db.call(decisions.approver_roles, definition_hashes=unknown))
        items = [Item(**r.model_dump(exclude={"definition_hash", "created_at"}),
                      approver_role=roles.get(r.definition_hash or "")) for r in page]
        for item, new in zip(items, candidate.decide(items), strict=True):
            report.add(item, new)
        after = (page[-1].created_at, page[-1].decision_id)
    report.failed = len(candidate.failed)
    return report
