"""Saved shadow reports: each reader sees the changes of their own tenants, a page at a time."""

from __future__ import annotations

from engine.store import shadow_reports
from engine.store.db import Database


def _change(n: int, tenant: str | None) -> dict[str, object]:
    return {"decision_id": f"d{n}", "run_id": f"r{n}", "tenant": tenant, "workflow": "w", "tool": "t",
            "args": {"n": n}, "old": "deny", "new": "allow", "old_reasons": ["no"], "new_reasons": []}


def test_changes_are_read_by_tenant_and_a_page_past_the_last_is_empty(db_url: str) -> None:
    db = Database(db_url)
    saved = db.call(shadow_reports.save_report, label="pr 7", revision="sha256:x", since="7d", workflow=None,
                    decided=3, same=0, reasons_changed=0, transitions={"deny->allow": 3}, failing={}, saved_by="ci",
                    changes=[_change(1, "acme"), _change(2, "globex"), _change(3, None)])
    changes, total = db.call(shadow_reports.report_changes, report_id=saved, tenants=["acme"])
    assert total == 1 and [c.run_id for c in changes] == ["r1"]
    assert db.call(shadow_reports.report_changes, report_id=saved, tenants=["acme"], offset=50) == ([], 1)
    # a page number from the address bar: no OFFSET beyond what the database's integers hold
    assert db.call(shadow_reports.report_changes, report_id=saved, tenants=["acme"], offset=10**30) == ([], 1)
