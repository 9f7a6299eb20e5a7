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


def claim(db: Database, key: str, by: str = "bob", approval_id: str = "apr_1") -> repo.QueuedDecision:
    return db.call(repo.claim_delivery, key=key, approval_id=approval_id, run_id="run-1", by=by, action="approve",
                   digest="sha256:d", comment="fine", source="cli:host")


def test_the_worker_and_the_door_race_for_a_queued_decision_and_one_wins(db: Database) -> None:
    queue(db, "dk_w")  # the worker claims it first: the door can no longer withdraw it
    assert status(claim(db, "dk_w")) == "delivering"
    assert status(claim(db, "dk_w")) == "delivering"  # a retry of the same step
    assert status(db.call(repo.withdraw_decision, key="dk_w", reason="x")) == "delivering"
    queue(db, "dk_d")  # the door withdraws it first: the worker's claim does not hold
    assert status(db.call(repo.withdraw_decision, key="dk_d", reason="not confirmed")) == "withdrawn"
    assert status(claim(db, "dk_d")) == "withdrawn"
    assert status(db.call(repo.settle_decision, key="dk_d", status="applied")) == "withdrawn"


def test_a_decision_the_worker_took_before_any_door_queued_it_cannot_be_withdrawn(db: Database) -> None:
    """The update reached a worker just as its door stopped waiting: the worker recorded it before it counted,
    so the door's queued record is that one, and its withdrawal (the signal failed) does not hold."""
    taken = claim(db, "dk_late")
    assert (taken.status, taken.door_queued, taken.by, taken.comment) == ("delivering", False, "bob", "fine")
    assert db.call(repo.get_approval, approval_id="apr_1").queued == []  # type: ignore[union-attr]
    assert db.call(repo.queued_by, approval_id="apr_1", person="bob") == []
    queued = queue(db, "dk_late")
    assert (queued.status, queued.door_queued) == ("delivering", True)
    assert status(db.call(repo.withdraw_decision, key="dk_late", reason="signal failed")) == "delivering"
    assert [q.key for q in db.call(repo.get_approval, approval_id="apr_1").waiting] == ["dk_late"]  # type: ignore[union-attr]
    # Applied before the door queued it: the door finds it applied.
    claim(db, "dk_done", by="carol")
    db.call(repo.settle_decision, key="dk_done", status="applied", result="approved")
    assert status(queue(db, "dk_done", by="carol")) == "applied"
    assert status(db.call(repo.withdraw_decision, key="dk_done", reason="signal failed")) == "applied"


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


def test_closing_an_approval_settles_every_decision_still_waiting(db: Database) -> None:
    queue(db, "dk_bob")
    queue(db, "dk_carol", by="carol")
    queue(db, "dk_dave", by="dave")
    queue(db, "dk_other", approval_id="apr_2")
    claim(db, "dk_bob")  # bob's is being applied: it is the one that closes it
    claim(db, "dk_dave", by="dave")  # dave's was taken too, but the approval closed before it counted
    vote = ApprovalVote(by="bob", decision="approve", at=utcnow(), digest="sha256:d", comment="fine",
                        source="cli:host")
    db.call(repo.close_approval, request=CloseApprovalInput(approval_id="apr_1", run_id="run-1", digest="sha256:d",
                                                            status="approved", votes=[vote]))
    shown = db.call(repo.get_approval, approval_id="apr_1")
    assert shown is not None and shown.waiting == []  # none is left waiting, even if the run never settles it
    states = {q.by: (q.status, q.result, q.reason) for q in shown.queued}
    assert states["bob"] == ("applied", "approved", None)
    assert states["carol"] == ("refused", None, "approval apr_1 was approved before this decision reached the run")
    assert states["dave"] == ("refused", None, "approval apr_1 was approved before this decision reached the run")
    assert queued_states(db, "apr_2") == ["queued"]
    # The run's own word, when it comes, replaces the reason of a refusal (an applied record stays applied).
    db.call(repo.settle_decision, key="dk_dave", status="refused", reason="approval apr_1 is already approved")
    db.call(repo.settle_decision, key="dk_bob", status="refused", reason="a copy")
    assert status(db.call(repo.queued_decision, key="dk_bob")) == "applied"
    assert db.call(repo.queued_decision, key="dk_dave").reason == "approval apr_1 is already approved"  # type: ignore[union-attr]
    # A partial vote closes nothing.
    db.call(repo.close_approval, request=CloseApprovalInput(approval_id="apr_2", run_id="run-1", digest="sha256:d",
                                                            status="pending", votes=[vote]))
    assert queued_states(db, "apr_2") == ["queued"]


def test_the_run_timeline_shows_a_queued_decision_and_what_became_of_it(db: Database) -> None:
    from engine.present import described

    queue(db, "dk_bob")
    claim(db, "dk_carol", by="carol")  # taken directly by a worker: its vote is the timeline's entry already
    db.call(repo.settle_decision, key="dk_bob", status="applied", result="pending: 1 of 2 approvals")
    queue(db, "dk_dave", by="dave")
    db.call(repo.withdraw_decision, key="dk_dave", reason="it could not be delivered: connection refused")
    lines = [t.summary for t in described(db.call(repo.run_timeline, run_id="run-1")) if "queued" in t.summary]
    bob, dave = (db.call(repo.queued_decision, key=key) for key in ("dk_bob", "dk_dave"))
    assert bob is not None and dave is not None
    assert lines == [
        f"bob's approve on apr_1 queued for delivery at {bob.queued_at:%Y-%m-%d %H:%M:%S} UTC (no worker took it "
        "in time)",
        "bob's queued approve on apr_1 applied: pending: 1 of 2 approvals",
        f"dave's approve on apr_1 queued for delivery at {dave.queued_at:%Y-%m-%d %H:%M:%S} UTC (no worker took "
        "it in time)",
        "dave's queued approve on apr_1 withdrawn: it could not be delivered: connection refused (it did not "
        "count)"]


def queued_states(db: Database, approval_id: str) -> list[str]:
    shown = db.call(repo.get_approval, approval_id=approval_id)
    assert shown is not None
    return [q.status for q in shown.queued]
