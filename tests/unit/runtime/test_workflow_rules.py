"""The run's rules for people's decisions, on the workflow object itself (the clock patched, no server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from temporalio.exceptions import ApplicationError

from engine.runtime.activity_io import VerifiedPerson
from engine.runtime.payloads import ApprovalVote, PendingAction, PolicyDecision, ToolCallRecord
from engine.runtime.workflow import AgentRunWorkflow

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LEADS = VerifiedPerson(name="bob", roles=["support-leads"])


@pytest.fixture
def run() -> Iterator[AgentRunWorkflow]:
    wf = AgentRunWorkflow()
    decision = PolicyDecision(outcome="require_approval", approvers=["support-leads"], min_approvals=2)
    call = ToolCallRecord(call_id="c1", step=1, index=0, tool="issue_refund", decision=decision, digest="d1",
                          approval_id="a1", outcome="pending_approval")
    wf._pending = {"a1": PendingAction(approval_id="a1", run_id="r1", call=call, requested_by="alice",
                                       expires_at=NOW + timedelta(hours=1))}
    with mock.patch("engine.runtime.workflow.workflow.now", lambda: NOW):
        yield wf


def refused(fn: object, *args: object) -> str:
    with pytest.raises(ApplicationError) as caught:
        fn(*args)  # type: ignore[operator]
    return f"{caught.value.type}: {caught.value.message}"


def test_a_decision_must_name_a_pending_action_on_its_digest(run: AgentRunWorkflow) -> None:
    assert refused(run._check_action, "a9", "d1") == "NotFoundError: no pending approval a9 in this run"
    assert refused(run._check_action, "a1", "old").startswith("ApprovalError: approval a1 is bound to action d1")
    assert run._check_action("a1", "d1").approval_id == "a1"


def test_a_decided_or_expired_action_takes_no_more_decisions(run: AgentRunWorkflow) -> None:
    run._pending["a1"].status = "rejected"
    assert refused(run._check_action, "a1", "d1") == "ApprovalError: approval a1 is already rejected"
    run._pending["a1"].status = "pending"
    run._pending["a1"].expires_at = NOW
    assert refused(run._check_action, "a1", "d1").startswith("ApprovalError: approval a1 expired at ")


def test_who_may_decide(run: AgentRunWorkflow) -> None:
    requester = VerifiedPerson(name="alice", roles=["support-leads"])
    assert refused(run._check_person, "a1", requester, "d1") == \
        "ApprovalError: alice started this run and cannot decide its actions"
    outsider = VerifiedPerson(name="dave", roles=["support"])
    assert "dave does not hold a role that may decide this action" in refused(run._check_person, "a1", outsider, "d1")
    run._check_person("a1", LEADS, "d1")  # allowed
    run._pending["a1"].call.votes.append(ApprovalVote(by="bob", decision="approve", at=NOW, digest="d1"))
    assert refused(run._check_person, "a1", LEADS, "d1") == "ApprovalError: bob already decided approval a1"
    run._pending["a1"].call.editors.append("carol")
    carol = VerifiedPerson(name="carol", roles=["support-leads"])
    assert refused(run._check_person, "a1", carol, "d1") == \
        "ApprovalError: carol edited this action and cannot decide it; someone else must"


def test_a_rejection_needs_a_reason(run: AgentRunWorkflow) -> None:
    from engine.runtime.payloads import ApprovalDecisionInput

    blank = ApprovalDecisionInput(approval_id="a1", decision="reject", digest="d1", assertion="x", comment="  ")
    assert refused(run._check_decision, blank) == \
        "ApprovalError: a rejection needs a reason; it goes back to the model"
    run._check_decision(blank.model_copy(update={"comment": "over the limit"}))


def test_the_quorum_comes_from_the_policy(run: AgentRunWorkflow) -> None:
    assert run._pending["a1"].call.approvals_needed == 2
    assert ToolCallRecord(call_id="c", step=1, index=0, tool="t").approvals_needed == 1
