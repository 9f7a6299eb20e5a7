"""The store's answers about authority: do the approvals already given cover a fresh decision, is an assertion
spent, how many actions has a run had decided (real SQLite store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from engine.errors import AuthenticationError
from engine.runtime.activities._actions import decision_cause
from engine.runtime.payloads import PolicyDecision, ResolvedRun, ToolCallRecord
from engine.spec import load_spec
from engine.store import authority, decisions, repo, users
from engine.store.db import Database
from engine.store.tables import PersonAssertionRow, RunRow

KEY = "run-1:2:0"
ROOT = Path(__file__).resolve().parents[3]


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


def _run(run_id: str, workflow_run_id: str) -> ResolvedRun:
    spec = load_spec(ROOT / "workflows" / "support_refund.yaml", project_dir=ROOT)
    return ResolvedRun(run_id=run_id, spec=spec, requested_by="alice", tenant="default", input={},
                       workflow_run_id=workflow_run_id)


def test_admitting_a_run_spends_its_start_assertion_once(db: Database) -> None:
    db.call(repo.admit_run, run=_run("run-2", "wf-a"), jti="start-1", roles=[], used_by="wf-a:start")
    db.call(repo.admit_run, run=_run("run-2", "wf-a"), jti="start-1", roles=[], used_by="wf-a:start")  # a retry
    assert db.call(repo.resolved_run, run_id="run-2") is not None
    with pytest.raises(AuthenticationError, match="already used"):  # the same assertion for another run
        db.call(repo.admit_run, run=_run("run-3", "wf-b"), jti="start-1", roles=[], used_by="wf-b:start")
    assert db.call(repo.resolved_run, run_id="run-3") is None
    with pytest.raises(AuthenticationError, match="another workflow run"):  # the same run id, another start
        db.call(repo.admit_run, run=_run("run-2", "wf-c"), jti="start-2", roles=[], used_by="wf-c:start")


def test_the_policy_context_counts_decided_actions_and_knows_a_decided_one(db: Database) -> None:
    for i, key in enumerate(["k-a", "k-b", "k-a"]):
        db.call(decisions.save_decision, decision_id=f"run-1:{i}", run_id="run-1", call_id=f"c{i}",
                package="airlock.support", document={"tool": {"name": "issue_refund"}},
                decision=PolicyDecision(outcome="allow", revision="r1"),
                raw={}, latency_ms=1.0, digest="sha256:d", idempotency_key=key, approval_id=None, cause="model")
    below = db.call(repo.policy_context, run_id="run-1", key="k-c", limit=3)
    assert (below.decided, below.seen, [c.key for c in below.past]) == (2, False, ["k-a", "k-b"])
    assert db.call(repo.policy_context, run_id="run-1", key="k-a", limit=2).seen
    assert not db.call(repo.policy_context, run_id="run-1", key="k-c", limit=2).seen


def test_calls_so_far_tells_what_each_earlier_action_came_to(db: Database) -> None:
    """Executed (with its result), failed, denied, rejected, waiting, allowed-not-run: each earlier action once,
    by the latest decision, in the order first decided; the action being decided is left out."""
    from datetime import timedelta

    from engine.runtime.activity_io import CloseApprovalInput, OpenApprovalsInput
    from engine.store.tables import utcnow

    def decide(i: int, key: str, outcome: str, amount: str, approval: str | None = None) -> None:
        db.call(decisions.save_decision, decision_id=f"run-1:{i}", run_id="run-1", call_id=f"c-{key}",
                package="airlock.support", document={"tool": {"name": "issue_refund", "args": {"amount": amount}}},
                decision=PolicyDecision(outcome=outcome, revision="r1"), raw={}, latency_ms=1.0, digest=f"d{i}",
                idempotency_key=key, approval_id=approval, cause="proposed")

    decide(0, "k-ran", "allow", "10.00")
    decide(1, "k-denied", "deny", "900.00")
    decide(2, "k-rejected", "require_approval", "120.00", approval="apr_r")
    decide(3, "k-waiting", "require_approval", "130.00", approval="apr_w")
    decide(4, "k-allowed", "allow", "5.00")
    decide(5, "k-failed", "allow", "6.00")
    decide(6, "k-denied", "allow", "90.00")  # decided again (an edit): the latest decision counts
    decide(7, "k-now", "allow", "1.00")
    decide(8, "k-no", "deny", "9000.00")
    calls = [ToolCallRecord(call_id=f"c-{k}", step=1, index=i, tool="issue_refund", approval_id=f"apr_{k[2]}",
                            digest=f"d{i}") for i, k in [(2, "k-rejected"), (3, "k-waiting")]]
    db.call(repo.open_approvals, request=OpenApprovalsInput(run_id="run-1", expires_at=utcnow() + timedelta(hours=1),
                                                            calls=calls))
    db.call(repo.close_approval, request=CloseApprovalInput(approval_id="apr_r", run_id="run-1", digest="d2",
                                                            status="rejected", reason="not this one"))
    for key, ok in [("k-ran", True), ("k-failed", False)]:
        db.call(repo.start_execution, key=key, run_id="run-1", call_id=f"c-{key}", tool="issue_refund",
                args={"amount": "x"}, digest="d", lease=None)
        db.call(repo.finish_execution, key=key, ok=ok, result={"refund_id": "re_1"} if ok else None,
                error=None if ok else "card declined", latency_ms=1.0)
    past = db.call(repo.calls_so_far, run_id="run-1", excluding="k-now")
    assert [(c.key, c.outcome) for c in past] == [
        ("k-ran", "executed"), ("k-denied", "allowed"), ("k-rejected", "rejected"), ("k-waiting", "pending_approval"),
        ("k-allowed", "allowed"), ("k-failed", "failed"), ("k-no", "denied")]
    ran, denied, *_, failed, _ = past
    assert ran.result == {"refund_id": "re_1"} and ran.args == {"amount": "x"}  # what ran, as it ran
    assert denied.args == {"amount": "90.00"} and denied.result is None
    assert failed.result is None and failed.error == "card declined"
    assert db.call(repo.calls_so_far, run_id="other") == []


def test_a_call_s_result_is_trusted_only_when_its_arguments_were(db: Database) -> None:
    """``args_trusted`` from the decision's provenance; a re-check that denied after the approval wins."""
    def decide(i: int, key: str, provenance: object, outcome: str = "allow", approval: str | None = None) -> None:
        document = {"tool": {"name": "lookup_order", "args": {"order_id": "A-1"}}, "provenance": provenance}
        db.call(decisions.save_decision, decision_id=f"run-1:{i}", run_id="run-1", call_id=f"c{i}",
                package="airlock.support", document=document, decision=PolicyDecision(outcome=outcome, revision="r"),
                raw={}, latency_ms=1.0, digest=f"d{i}", idempotency_key=key, approval_id=approval, cause="proposed")

    decide(0, "k-typed", {"order_id": {"sources": [{"from": "user"}], "trusted": True}})
    decide(1, "k-made-up", {"order_id": {"sources": [], "trusted": False}})
    decide(2, "k-no-args", {})
    past = {c.key: c.args_trusted for c in db.call(repo.calls_so_far, run_id="run-1")}
    assert past == {"k-typed": True, "k-made-up": False, "k-no-args": True}
    # approved, then refused by the re-check before it ran: denied, not "approved"
    from datetime import timedelta

    from engine.runtime.activity_io import CloseApprovalInput, OpenApprovalsInput
    from engine.store.tables import utcnow

    decide(3, "k-gated", {}, outcome="require_approval", approval="apr_g")
    gated = ToolCallRecord(call_id="c3", step=1, index=3, tool="lookup_order", approval_id="apr_g", digest="d3")
    db.call(repo.open_approvals, request=OpenApprovalsInput(run_id="run-1", expires_at=utcnow() + timedelta(hours=1),
                                                            calls=[gated]))
    db.call(repo.close_approval, request=CloseApprovalInput(approval_id="apr_g", run_id="run-1", digest="d3",
                                                            status="approved"))
    assert db.call(repo.calls_so_far, run_id="run-1")[-1].outcome == "approved"
    decide(4, "k-gated", {}, outcome="deny", approval="apr_g")
    assert db.call(repo.calls_so_far, run_id="run-1")[-1].outcome == "denied"
