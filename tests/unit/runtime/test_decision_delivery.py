"""How a door delivers a decision (``runs.decide_approval``, ``runs.edit_action``) when the run answers, when
no worker takes the update in time, and when Temporal does not confirm the signal either; what binds a
decision (assertion, keys). Temporal is a fake here; the store is real SQLite."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from engine.boundary.identity import Authority, Verifier, note_hash
from engine.errors import ApprovalError, AuthenticationError
from engine.runtime import runs
from engine.runtime.payloads import (
    ApprovalDecisionInput,
    ApprovalDecisionResult,
    canonical_assertion,
    decision_key,
    delivery_key,
)
from engine.store import repo
from engine.store.db import Database
from engine.store.tables import ApprovalRow, utcnow
from engine.store.users import Approver

KEY = Ed25519PrivateKey.generate()
BOB = Approver(name="bob", roles=["support-leads"])


class FakeHandle:
    """A run's handle whose update and signal do what the test says, and remember what they were sent."""

    def __init__(self, update: Callable[[Any], Awaitable[Any]], signal: Callable[[Any], Awaitable[None]]) -> None:
        self._update, self._signal = update, signal
        self.updates: list[tuple[Any, str]] = []
        self.signals: list[Any] = []

    async def execute_update(self, update: Any, payload: Any, *, id: str) -> Any:
        self.updates.append((payload, id))
        return await self._update(payload)

    async def signal(self, signal: Any, payload: Any, *, rpc_timeout: timedelta) -> None:
        self.signals.append(payload)
        await self._signal(payload)


class FakeClient:
    def __init__(self, handle: FakeHandle) -> None:
        self.handle = handle

    def get_workflow_handle_for(self, run: Any, run_id: str) -> FakeHandle:
        return self.handle


async def hang(payload: Any) -> Any:
    await asyncio.sleep(3600)  # no worker takes it


async def taken(payload: Any) -> None:
    return None  # Temporal recorded the signal


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'airlock.db'}").ready()

    def setup(session: Session) -> None:
        session.add(ApprovalRow(approval_id="apr_1", run_id="run-1", workflow="w", version=1, tool="t",
                                args={"amount": "1"}, digest="sha256:d", requested_by="alice", tenant="default",
                                status="pending", expires_at=utcnow() + timedelta(hours=1), min_approvals=2))
        session.commit()

    database.call(setup)
    return database


def key_of(assertion: str) -> str:
    """A decision's key: by its verified assertion's id."""
    return decision_key(Verifier(KEY.public_key()).signed(assertion).jti)


async def decide(db: Database, handle: FakeHandle, **kwargs: Any) -> ApprovalDecisionResult:
    return await runs.decide_approval(FakeClient(handle), db, Authority(KEY), approval_id="apr_1",  # type: ignore[arg-type]
                                      decision="approve", approver=BOB, comment="fine", source="cli:host",
                                      wait_s=0.2, **kwargs)


async def test_a_decision_the_run_takes_in_time_is_answered_by_the_run_and_queues_nothing(db: Database) -> None:
    async def answer(payload: Any) -> ApprovalDecisionResult:
        return ApprovalDecisionResult(approval_id="apr_1", status="pending", approvals=1, needed=2)

    handle = FakeHandle(answer, taken)
    result = await decide(db, handle)
    assert (result.status, result.approvals) == ("pending", 1)
    assert handle.signals == [] and db.call(repo.get_approval, approval_id="apr_1").queued == []  # type: ignore[union-attr]
    [(payload, update_id)] = handle.updates
    assert update_id == key_of(payload.assertion)


async def test_no_worker_in_time_queues_the_same_signed_decision_and_says_so(db: Database) -> None:
    handle = FakeHandle(hang, taken)
    result = await decide(db, handle)
    assert result.status == "queued" and result.needed == 2
    assert result.detail and "bob's approve was accepted for delivery at " in result.detail
    assert result.detail.endswith("will apply when a worker is back (no worker took it within 0.2 s)")
    [(update_payload, _)] = handle.updates
    assert handle.signals == [update_payload]  # the very same payload: one delivery, whichever way it arrives
    [queued] = db.call(repo.get_approval, approval_id="apr_1").waiting  # type: ignore[union-attr]
    assert (queued.key, queued.by, queued.action, queued.digest, queued.comment, queued.source) == (
        key_of(update_payload.assertion), "bob", "approve", "sha256:d", "fine", "cli:host")
    with pytest.raises(ApprovalError, match="bob already decided approval apr_1: bob's approve was accepted"):
        await decide(db, handle)


async def test_an_unconfirmed_signal_withdraws_the_decision_and_says_it_does_not_count(db: Database) -> None:
    async def lost(payload: Any) -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    with pytest.raises(ApprovalError, match=r"the decision was not recorded \(no worker took it within 0.2 s, and "
                                            r"Temporal did not take it for delivery: connection refused\); it does "
                                            r"not count, decide again"):
        await decide(db, FakeHandle(hang, lost))
    [withdrawn] = db.call(repo.get_approval, approval_id="apr_1").queued  # type: ignore[union-attr]
    assert (withdrawn.status, withdrawn.waiting) == ("withdrawn", False)


async def test_an_unconfirmed_signal_a_worker_already_took_is_not_withdrawn(db: Database) -> None:
    async def late_answer(payload: Any) -> None:  # the signal landed, a worker claimed it, the answer was lost
        db.call(repo.claim_delivery, key=key_of(payload.assertion), approval_id="apr_1", run_id="run-1", by="bob",
                action="approve", digest="sha256:d", comment="fine", source="cli:host")
        raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")

    result = await decide(db, FakeHandle(hang, late_answer))
    assert result.status == "queued"
    [queued] = db.call(repo.get_approval, approval_id="apr_1").queued  # type: ignore[union-attr]
    assert queued.status == "delivering"


async def test_a_signal_a_worker_applied_at_once_is_answered_as_applied(db: Database) -> None:
    async def applied(payload: Any) -> None:
        db.call(repo.settle_decision, key=key_of(payload.assertion), status="applied",
                result="pending: 1 of 2 approvals")

    result = await decide(db, FakeHandle(hang, applied))
    assert (result.status, result.detail) == ("pending", "applied by the run: pending: 1 of 2 approvals")


async def test_a_refusal_or_an_ended_run_queues_nothing(db: Database) -> None:
    async def refused(payload: Any) -> Any:
        raise WorkflowUpdateFailedError(ApplicationError("alice started this run", type="ApprovalError"))

    handle = FakeHandle(refused, taken)
    with pytest.raises(ApprovalError, match="alice started this run"):
        await decide(db, handle)

    async def ended(payload: Any) -> Any:
        raise RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")

    with pytest.raises(ApprovalError, match="run run-1 cannot take decisions now: workflow execution already"):
        await decide(db, FakeHandle(ended, taken))
    assert handle.signals == [] and db.call(repo.get_approval, approval_id="apr_1").queued == []  # type: ignore[union-attr]


async def test_an_edit_without_a_worker_is_queued_the_same_way(db: Database) -> None:
    handle = FakeHandle(hang, taken)
    result = await runs.edit_action(FakeClient(handle), db, Authority(KEY), approval_id="apr_1",  # type: ignore[arg-type]
                                    approver=BOB, args={"amount": "2"}, comment="agreed", wait_s=0.2)
    assert result.status == "queued"
    [queued] = db.call(repo.get_approval, approval_id="apr_1").waiting  # type: ignore[union-attr]
    assert (queued.action, queued.args, queued.comment) == ("edit", {"amount": "2"}, "agreed")


# --- what binds a decision ------------------------------------------------------------------------------


def test_a_queued_decision_s_assertion_is_judged_as_of_when_it_was_queued() -> None:
    token = Authority(KEY, ttl_s=-60).decide(user="bob", run_id="r", approval_id="a", digest="d", action="approve")
    verifier = Verifier(KEY.public_key())
    with pytest.raises(AuthenticationError, match="has expired"):
        verifier.verify(token)
    assert verifier.verify(token, at=datetime.now(UTC) - timedelta(seconds=90)).subject == "bob"
    with pytest.raises(AuthenticationError, match="had expired when the decision was queued"):
        verifier.verify(token, at=datetime.now(UTC))
    forged = Authority(Ed25519PrivateKey.generate()).decide(user="bob", run_id="r", approval_id="a", digest="d",
                                                             action="approve")
    with pytest.raises(AuthenticationError, match="Signature verification failed"):  # the signature, always
        verifier.verify(forged, at=datetime.now(UTC))


def test_the_comment_and_source_are_signed() -> None:
    token = Authority(KEY).decide(user="bob", run_id="r", approval_id="a", digest="d", action="reject",
                                  comment="over the limit", source="10.0.0.1")
    claims = Verifier(KEY.public_key()).verify(token)
    assert claims.note_hash == note_hash("over the limit", "10.0.0.1") != note_hash("pay it", "10.0.0.1")
    assert note_hash(None, None) is None and note_hash("", "") is None


def test_a_delivery_key_is_the_whole_payload_and_a_decision_key_the_assertion_s_id() -> None:
    token = Authority(KEY).decide(user="bob", run_id="r", approval_id="a", digest="d", action="approve")
    base = ApprovalDecisionInput(approval_id="a", decision="approve", digest="d", assertion=token, comment="ok")
    assert delivery_key(base) == delivery_key(ApprovalDecisionInput.model_validate(base.model_dump(mode="json")))
    assert delivery_key(base) != delivery_key(base.model_copy(update={"comment": "other"}))
    assert delivery_key(base) != delivery_key(base.model_copy(update={"approval_id": "b"}))
    # The same signed assertion spelled otherwise (PyJWT reads '==' after the signature too) is the same
    # delivery; another assertion, or a forged signature, is not.
    respelled = base.model_copy(update={"assertion": token + "=="})
    assert Verifier(KEY.public_key()).verify(respelled.assertion).jti == Authority(KEY).assertion_id(token)
    assert canonical_assertion(token + "==") == canonical_assertion(token) == token
    assert delivery_key(respelled) == delivery_key(base)
    forged = token.rsplit(".", 1)[0] + "." + Authority(KEY).decide(user="bob", run_id="r", approval_id="a",
                                                                     digest="d", action="approve").rsplit(".", 1)[1]
    assert delivery_key(base.model_copy(update={"assertion": forged})) != delivery_key(base)
    assert delivery_key(base.model_copy(update={"assertion": "not a token"})) != delivery_key(base)
    # The decision's record is keyed by the assertion's id, whatever its spelling.
    assert key_of(token) == key_of(token + "==") == decision_key(Authority(KEY).assertion_id(token))
    assert decision_key("jti-1") != decision_key("jti-2")


def test_the_run_takes_a_delivery_once() -> None:
    from unittest import mock

    from engine.runtime.payloads import PendingAction, PolicyDecision, ToolCallRecord
    from engine.runtime.workflow import AgentRunWorkflow

    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    wf = AgentRunWorkflow()
    call = ToolCallRecord(call_id="c1", step=1, index=0, tool="issue_refund", digest="d1", approval_id="a1",
                          decision=PolicyDecision(outcome="require_approval", approvers=["support-leads"]))
    wf._pending = {"a1": PendingAction(approval_id="a1", run_id="r1", call=call, requested_by="alice",
                                       expires_at=now + timedelta(hours=1))}
    delivery = ApprovalDecisionInput(approval_id="a1", decision="approve", digest="d1", assertion="t")
    with mock.patch("engine.runtime.workflow.workflow.now", lambda: now):
        wf._check_decision(delivery)  # the update's validator: new, so it may go on
        wf._taken.add(delivery_key(delivery))  # ... it did (or its signal did)
        with pytest.raises(ApplicationError, match="this decision has reached the run already; it counts once"):
            wf._check_decision(delivery)
        wf._check_decision(delivery.model_copy(update={"assertion": "another"}))  # another delivery: judged anew


async def test_the_run_settles_each_decision_it_takes_by_update_applied_or_refused(tmp_path: Path) -> None:
    """No signal may follow an update the door stopped waiting for: the run records what became of it itself
    (else a record the worker took stays 'delivering' and a refused person is never told)."""
    from unittest import mock

    from engine.runtime import contract
    from engine.runtime.activity_io import CloseApprovalResult, SettleDecisionResult, VerifiedPerson
    from engine.runtime.payloads import PendingAction, PolicyDecision, ResolvedRun, ToolCallRecord
    from engine.runtime.workflow import AgentRunWorkflow
    from engine.spec import load_spec

    root = Path(__file__).resolve().parents[3]
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    wf = AgentRunWorkflow()
    spec = load_spec(root / "workflows" / "support_refund.yaml", project_dir=root)
    wf._request = ResolvedRun(run_id="r1", spec=spec, requested_by="alice", tenant="default")
    call = ToolCallRecord(call_id="c1", step=1, index=0, tool="issue_refund", digest="d1", approval_id="a1",
                          decision=PolicyDecision(outcome="require_approval", approvers=["support-leads"]))
    wf._pending = {"a1": PendingAction(approval_id="a1", run_id="r1", call=call, requested_by="alice",
                                       expires_at=now + timedelta(hours=1))}
    settled: list[Any] = []

    async def activity(fn: Any, arg: Any, **_: Any) -> Any:
        if fn is contract.verify_person:
            name = Verifier(KEY.public_key()).verify(arg.assertion).subject
            if name == "carol":  # bob's approval closed it while carol's was being verified
                wf._pending["a1"].status = "approved"
            return VerifiedPerson(name=name, roles=["support-leads"], tenants=["default"])
        if fn is contract.close_approval:
            return CloseApprovalResult()
        assert fn is contract.settle_decision
        settled.append(arg)
        return SettleDecisionResult(settled=True)

    def decision(user: str) -> ApprovalDecisionInput:
        return ApprovalDecisionInput(approval_id="a1", decision="approve", digest="d1",
                                     assertion=Authority(KEY).decide(user=user, run_id="r1", approval_id="a1",
                                                                     digest="d1", action="approve"))

    with mock.patch("engine.runtime.workflow.workflow.now", lambda: now), \
            mock.patch("engine.runtime.workflow.workflow.patched", lambda patch_id: True), \
            mock.patch("engine.runtime.workflow.workflow.logger", logging.getLogger(__name__)), \
            mock.patch("engine.runtime.workflow.workflow.execute_activity", activity):
        bobs, carols = decision("bob"), decision("carol")
        wf._check_decision(bobs)
        assert (await wf.decide_approval(bobs)).status == "approved"
        with pytest.raises(ApplicationError, match="approval a1 is already approved"):
            await wf.decide_approval(carols)  # the validator let it in; the run refuses it after verifying
    assert [(s.decision.assertion, s.status, s.result, s.reason) for s in settled] == [
        (bobs.assertion, "applied", "approved", None),
        (carols.assertion, "refused", None, "approval a1 is already approved")]
    assert settled[0].run_id == "r1" and settled[0].decision.approval_id == "a1"
