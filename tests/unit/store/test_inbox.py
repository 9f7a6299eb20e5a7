"""The inbox paged, filtered and counted in SQL: with many items, every page, filter and count is exactly
what reading them all would give (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import Session

from engine.store import repo
from engine.store.db import Database
from engine.store.tables import ApprovalRow, QueuedDecisionRow, utcnow

ROWS = 2000
TENANTS = ["default", "acme"]  # the reader's; "globex" is another's
APPROVER_SETS: tuple[list[str], ...] = ([], ["treasury"], ["treasury-approvers"], ["treasury-approvers", "risk"],
                                        ["support-leads"])


def _rows() -> list[dict[str, Any]]:
    """Approvals in bulk, in threes made at the same instant (so the order needs its tie-break)."""
    rng = random.Random(14)
    now = utcnow().replace(microsecond=0)
    return [{"approval_id": f"apr_{rng.getrandbits(64):016x}", "run_id": f"run-{i}",
             "workflow": rng.choice(("payout", "refund", "invoice", "payroll")), "version": 1,
             "tool": rng.choice(("transfer_erc20", "issue_refund", "pay_invoice")),
             "args": {"to": f"0x{rng.getrandbits(160):040x}", "amount": str(rng.randint(1, 10**6))},
             "facts": {"balance": str(rng.randint(0, 10**9))}, "policy_reasons": ["above the limit"],
             "approvers": rng.choice(APPROVER_SETS), "digest": f"sha256:{rng.getrandbits(256):064x}",
             "requested_by": "alice", "tenant": rng.choice(("default", "acme", "globex")),
             "status": rng.choice(("pending",) * 8 + ("approved", "rejected")), "votes": [],
             "created_at": now - timedelta(seconds=i // 3), "expires_at": now + timedelta(days=1)}
            for i in range(ROWS)]


@pytest.fixture
def seeded(db_url: str) -> tuple[Database, list[dict[str, Any]]]:
    """A database holding ``ROWS`` approvals, and decisions queued on some (one only a worker recorded)."""
    db, rows = Database(db_url), _rows()
    queued = [{"key": f"dk_{i}", "approval_id": row["approval_id"], "run_id": row["run_id"], "by": "carol",
               "action": "approve", "digest": row["digest"], "status": "queued", "queued_at": utcnow(),
               "door_queued": i % 2 == 0} for i, row in enumerate(rows[:30])]
    with Session(db.engine) as session:
        session.execute(insert(ApprovalRow), rows)
        session.execute(insert(QueuedDecisionRow), queued)
        session.commit()
    return db, rows


def expected(rows: list[dict[str, Any]], *, tenants: list[str] = TENANTS, status: str | None = "pending",
             workflow: str | None = None, tool: str | None = None, role: str | None = None) -> list[str]:
    """The ids the inbox must list, in order: every row read and filtered here, newest first."""
    found = [r for r in rows if r["tenant"] in tenants and status in (None, r["status"])
             and workflow in (None, r["workflow"]) and tool in (None, r["tool"])
             and (role is None or role in r["approvers"])]
    return [r["approval_id"] for r in sorted(found, key=lambda r: (r["created_at"], r["approval_id"]), reverse=True)]


def every_page(db: Database, page_size: int, **filters: Any) -> tuple[list[str], list[int]]:
    """The ids of every page in turn (up to the first empty one), and the total each page reported."""
    ids: list[str] = []
    totals = []
    for page in range(1, ROWS + 2):
        items, total = db.call(repo.inbox, tenants=TENANTS, page=page, page_size=page_size, **filters)
        totals.append(total)
        if not items:
            return ids, totals
        ids += [i.approval_id for i in items]
    raise AssertionError("the inbox never ran out of pages")


FILTERS: list[dict[str, Any]] = [
    {}, {"status": None}, {"status": "approved"}, {"workflow": "payout"}, {"tool": "pay_invoice"},
    {"role": "treasury-approvers"}, {"role": "treasury"}, {"role": "nobody"},
    {"workflow": "refund", "tool": "issue_refund", "role": "support-leads"}]


def test_the_first_page_and_total_under_each_filter_are_what_reading_every_row_gives(
        seeded: tuple[Database, list[dict[str, Any]]]) -> None:
    db, rows = seeded
    for filters in FILTERS:
        want = expected(rows, **filters)
        items, total = db.call(repo.inbox, tenants=TENANTS, **filters)
        assert (total, [i.approval_id for i in items]) == (len(want), want[:20]), filters
        assert items == [db.call(repo.get_approval, approval_id=i) for i in want[:20]], filters  # whole items


def test_paging_through_every_page_neither_skips_nor_repeats_an_item(
        seeded: tuple[Database, list[dict[str, Any]]]) -> None:
    db, rows = seeded
    for filters in ({}, {"status": None}, {"role": "treasury-approvers"}):
        want = expected(rows, **filters)
        ids, totals = every_page(db, 97, **filters)
        assert ids == want and len(want) > 97 * 3, filters
        assert set(totals) == {len(want)}, filters


def test_pages_out_of_range_and_no_tenants(seeded: tuple[Database, list[dict[str, Any]]]) -> None:
    db, rows = seeded
    want = expected(rows)
    for page in (0, -3):  # before the first: the first
        items, total = db.call(repo.inbox, tenants=TENANTS, page=page)
        assert ([i.approval_id for i in items], total) == (want[:20], len(want))
    for page in (len(want) // 20 + 2, 10**30):  # past the last: empty, still counted
        assert db.call(repo.inbox, tenants=TENANTS, page=page) == ([], len(want))
    assert db.call(repo.inbox, tenants=[]) == ([], 0)
    assert db.call(repo.inbox, tenants=["globex"])[1] == len(expected(rows, tenants=["globex"]))


def test_only_the_decisions_doors_queued_are_shown_on_the_page(seeded: tuple[Database, list[dict[str, Any]]]) -> None:
    db, rows = seeded
    shown = {i.approval_id: [q.key for q in i.queued]
             for i in db.call(repo.inbox, tenants=["default", "acme", "globex"], status=None, page_size=30)[0]}
    assert shown == {r["approval_id"]: [f"dk_{n}"] if n % 2 == 0 else [] for n, r in enumerate(rows[:30])}


def test_facets_name_what_pending_items_of_the_tenants_have(seeded: tuple[Database, list[dict[str, Any]]]) -> None:
    db, rows = seeded
    pending = [r for r in rows if r["status"] == "pending" and r["tenant"] in TENANTS]
    assert db.call(repo.inbox_facets, tenants=TENANTS) == {
        "workflow": sorted({r["workflow"] for r in pending}), "tool": sorted({r["tool"] for r in pending}),
        "role": sorted({a for r in pending for a in r["approvers"]})}
    assert db.call(repo.inbox_facets, tenants=[]) == {"workflow": [], "tool": [], "role": []}


def test_runs_pending_items_are_listed_newest_first(seeded: tuple[Database, list[dict[str, Any]]]) -> None:
    db, rows = seeded
    tied = [r["approval_id"] for r in rows[:3]]  # made at the same instant
    with Session(db.engine) as session:
        for approval_id in tied:
            row = session.get(ApprovalRow, approval_id)
            assert row is not None
            row.run_id = "run-tied"
            session.add(row)
        session.commit()
    listed = db.call(repo.list_approvals, status=None, run_id="run-tied")
    assert [i.approval_id for i in listed] == sorted(tied, reverse=True)
