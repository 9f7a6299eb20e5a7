"""The re-check before execution: do the approvals already given cover a fresh decision? (real SQLite store)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from engine.runtime.activities._actions import decision_cause
from engine.runtime.payloads import PolicyDecision, ToolCallRecord
from engine.store import authority, users
from engine.store.db import Database
from engine.store.tables import PersonAssertionRow, RunRow

KEY = "run-1:2:0"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'airlock.db'}").ready()

    def setup(session: Session) -> None:
        session.add(RunRow(run_id="run-1", workflow="treasury-payout", version=1, requested_by="alice",
                           tenant="default", status="running"))
        session.add(PersonAssertionRow(jti="j1", run_id="run-1", approval_id="apr_1", idempotency_key=KEY,
                                       digest="sha256:d", action="edit", subject="carol", roles=["ops"],
                                       used_by="x"))
        session.commit()
        for name, roles, tenants in [("alice", ["treasury-approvers"], ["default"]),
                                     ("bob", ["treasury-approvers"], ["default"]),
                                     ("dan", ["treasury-approvers", "cfo"], ["default"]),
                                     ("carol", ["cfo"], ["default"]),
                                     ("erin", ["cfo"], ["other"]),
                                     ("sam", ["support"], ["default"])]:
            users.add_user(session, name=name, password="correct horse battery", roles=roles,
                           tenants=tenants)

    database.call(setup)
    return database


SHOWN = "payments above 5000 TUSD need one approval by treasury-approvers"


def need(*approvers: str, count: int = 1, outcome: str = "require_approval",
         reasons: tuple[str, ...] = (SHOWN,)) -> PolicyDecision:
    return PolicyDecision(outcome=outcome, require_approval=outcome == "require_approval",
                          approvers=list(approvers), min_approvals=count, reasons=list(reasons))


@pytest.mark.parametrize("approved_by, decision, problem", [
    (["bob"], need(outcome="allow"), None),  # the fresh decision allows: nothing more to ask
    (["bob"], need("treasury-approvers"), None),  # the same requirement, already met
    (["bob", "dan"], need("treasury-approvers", count=2), None),
    (["bob"], need("treasury-approvers", count=2),
     "needs 2 approval(s) by treasury-approvers; the approvals given count 1 (bob)"),
    (["bob"], need("cfo"), "needs 1 approval(s) by cfo; the approvals given count 0"),  # other approvers now
    (["dan"], need("cfo"), None),  # dan holds both roles
    (["carol"], need("cfo"), "needs 1 approval(s) by cfo; the approvals given count 0"),  # carol edited it
    (["erin"], need("cfo"), "needs 1 approval(s) by cfo; the approvals given count 0"),  # another tenant
    (["alice"], need("treasury-approvers"),
     "needs 1 approval(s) by treasury-approvers; the approvals given count 0"),  # the requester
    (["ghost"], need("treasury-approvers"),
     "needs 1 approval(s) by treasury-approvers; the approvals given count 0"),  # no such user (any more)
    ([], need("treasury-approvers"), "needs 1 approval(s) by treasury-approvers; the approvals given count 0"),
    (["bob", "dan"], need(outcome="deny"), "policy decided deny"),
    (["bob"], need("treasury-approvers", reasons=()), None),  # fewer reasons than were shown
    # The same role and count, but asked for a reason bob never saw: a person must weigh it.
    (["bob"], need("treasury-approvers", reasons=(SHOWN, "recipient was flagged an hour ago")),
     "it now asks approval for what the approvers were not shown: recipient was flagged an hour ago"),
])
def test_granted_approvals_cover_only_what_they_can(db: Database, approved_by: list[str],
                                                    decision: PolicyDecision, problem: str | None) -> None:
    assert db.call(authority.uncovered, run_id="run-1", idempotency_key=KEY, approved_by=approved_by,
                   decision=decision, approved_reasons=[SHOWN]) == problem


def test_a_person_whose_role_was_taken_away_no_longer_counts(db: Database) -> None:
    db.call(lambda s: users.add_user(s, name="bob", password="correct horse battery", roles=["support"]))
    assert db.call(authority.uncovered, run_id="run-1", idempotency_key=KEY, approved_by=["bob"],
                   decision=need("treasury-approvers"), approved_reasons=[SHOWN]) is not None


@pytest.mark.parametrize("fields, cause", [
    ({}, "proposed"),
    ({"revision": 1, "edited_by": "bob"}, "edited by bob (revision 1)"),
    ({"rechecks": 2, "recheck_reason": "re-check before execution: sender.token_balance changed"},
     "decided again (2): re-check before execution: sender.token_balance changed"),
    ({"revision": 1, "edited_by": "bob", "rechecks": 1},
     "edited by bob (revision 1); decided again (1): the re-check sent it back"),
])
def test_every_decision_says_why_it_was_made(fields: dict[str, object], cause: str) -> None:
    call = ToolCallRecord(call_id="c", step=1, index=0, tool="transfer_token", **fields)
    assert decision_cause(call) == cause
