"""Decisions queued for delivery: who may move them on, and how the inbox shows them (real SQLite store)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from engine.runtime.activity_io import CloseApprovalInput
from engine.runtime.payloads import ApprovalVote
from engine.store import repo
from engine.store.db import Database
from engine.store.tables import ApprovalRow, utcnow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'airlock.db'}").ready()

    def setup(session: Session) -> None:
        for approval_id in ("apr_1", "apr_2"):
            session.add(ApprovalRow(approval_id=approval_id, run_id="run-1", workflow="w", version=1, tool="t",
                                    args={}, digest="sha256:d", requested_by="alice", tenant="default",
                                    status="pending", expires_at=utcnow() + timedelta(hours=1)))
        session.commit()

    database.call(setup)
    return database


def queue(db: Database, key: str, by: str = "bob", approval_id: str = "apr_1") -> repo.QueuedDecision:
    return db.call(repo.queue_decision, key=key, approval_id=approval_id, run_id="run-1", by=by, action="approve",
                   digest="sha256:d", comment="fine", source="cli:host")


def test_queueing_is_idempotent_and_the_inbox_shows_what_waits(db: Database) -> None:
    first = queue(db, "dk_1")
    assert queue(db, "dk_1") == first  # the same decision again: one record
    assert (first.status, first.by, first.comment, first.waiting) == ("queued", "bob", "fine", True)
    shown = db.call(repo.get_approval, approval_id="apr_1")
    assert shown is not None and [q.key for q in shown.waiting] == ["dk_1"]
    items, _ = db.call(repo.inbox, tenants=["default"])
    assert {i.approval_id: [q.by for q in i.waiting] for i in items} == {"apr_1": ["bob"], "apr_2": []}
    assert [q.key for q in db.call(repo.queued_by, approval_id="apr_1", person="bob")] == ["dk_1"]
    assert db.call(repo.queued_by, approval_id="apr_1", person="carol") == []


def status(found: repo.QueuedDecision | None) -> str | None:
    return found.status if found else None


def test_the_worker_and_the_door_race_for_a_queued_decision_and_one_wins(db: Database) -> None:
    queue(db, "dk_w")  # the worker claims it first: the door can no longer withdraw it
    assert status(db.call(repo.claim_delivery, key="dk_w")) == "delivering"
    assert status(db.call(repo.claim_delivery, key="dk_w")) == "delivering"  # a retry of the same step
    assert status(db.call(repo.withdraw_decision, key="dk_w", reason="x")) == "delivering"
    queue(db, "dk_d")  # the door withdraws it first: the worker's claim does not hold
    assert status(db.call(repo.withdraw_decision, key="dk_d", reason="not confirmed")) == "withdrawn"
    assert status(db.call(repo.claim_delivery, key="dk_d")) == "withdrawn"
    assert status(db.call(repo.settle_decision, key="dk_d", status="applied")) == "withdrawn"
    assert db.call(repo.claim_delivery, key="dk_none") is None


def test_applied_is_final_and_a_refusal_says_why(db: Database) -> None:
    queue(db, "dk_a")
    applied = db.call(repo.settle_decision, key="dk_a", status="applied", result="pending: 1 of 2 approvals")
    assert applied is not None and (applied.status, applied.result, applied.waiting) == (
        "applied", "pending: 1 of 2 approvals", False)
    still = db.call(repo.settle_decision, key="dk_a", status="refused", reason="a copy came later")
    assert still is not None and still.status == "applied"
    queue(db, "dk_r", by="carol")
    refused = db.call(repo.settle_decision, key="dk_r", status="refused", reason="carol already decided")
    assert refused is not None and (refused.status, refused.reason) == ("refused", "carol already decided")


def test_closing_an_approval_refuses_what_is_still_queued_and_leaves_what_a_worker_has(db: Database) -> None:
    queue(db, "dk_bob")
    queue(db, "dk_carol", by="carol")
    queue(db, "dk_other", approval_id="apr_2")
    db.call(repo.claim_delivery, key="dk_bob")  # bob's is being applied: it is the one that closes it
    vote = ApprovalVote(by="bob", decision="approve", at=utcnow(), digest="sha256:d")
    db.call(repo.close_approval, request=CloseApprovalInput(approval_id="apr_1", run_id="run-1", digest="sha256:d",
                                                            status="approved", votes=[vote]))
    shown = db.call(repo.get_approval, approval_id="apr_1")
    assert shown is not None
    states = {q.by: (q.status, q.reason) for q in shown.queued}
    assert states["bob"] == ("delivering", None)
    assert states["carol"] == ("refused", "approval apr_1 was approved before this decision reached the run")
    assert queued_states(db, "apr_2") == ["queued"]
    # A partial vote closes nothing.
    db.call(repo.close_approval, request=CloseApprovalInput(approval_id="apr_2", run_id="run-1", digest="sha256:d",
                                                            status="pending", votes=[vote]))
    assert queued_states(db, "apr_2") == ["queued"]


def queued_states(db: Database, approval_id: str) -> list[str]:
    shown = db.call(repo.get_approval, approval_id=approval_id)
    assert shown is not None
    return [q.status for q in shown.queued]
