"""A decision's record (``queued_decisions``) as the worker keeps it: found by the id of the verified assertion,
never by the token's text; made before the decision counts, so that a door which queues it afterwards cannot
withdraw it; settled only by a delivery the assertion is bound to. The activities run in Temporal's activity
environment; the store is real SQLite; the door's Temporal handle is a fake."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from engine.boundary.identity import Authority, Verifier
from engine.runtime import runs
from engine.runtime.activities._people import PeopleActivities
from engine.runtime.activity_io import SettleDecisionInput, VerifyPersonInput
from engine.runtime.payloads import PolicyDecision, ResolvedRun, decision_key
from engine.spec import load_spec
from engine.store import decisions, repo, users
from engine.store.db import Database
from engine.store.tables import ApprovalRow, PersonAssertionRow, utcnow
from engine.store.users import Approver
from tests.unit.runtime.test_decision_delivery import FakeClient, FakeHandle

ROOT = Path(__file__).resolve().parents[3]
RUN, WF_RUN, APR, DIG = "support-refund-test2", "wfrun-2", "apr_x", "sha256:d"
KEY = Ed25519PrivateKey.generate()
BOB = Approver(name="bob", roles=["support-leads"])


class Worker:
    """A worker's people activities for one run, each call a new activity of that run."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = db = Database(f"sqlite:///{tmp_path / 'airlock.db'}").ready()
        spec = load_spec(ROOT / "workflows" / "support_refund.yaml", project_dir=ROOT)
        run = ResolvedRun(run_id=RUN, spec=spec, requested_by="alice", tenant="default", workflow_run_id=WF_RUN)
        db.call(repo.register_run, run=run)
        with Session(db.engine) as session:
            users.add_user(session, name="bob", password="pw-123456789", roles=["support-leads"])
            session.add(ApprovalRow(approval_id=APR, run_id=RUN, workflow=spec.name, version=spec.version,
                                    tool="issue_refund", args={}, digest=DIG, requested_by="alice",
                                    tenant="default", status="pending", expires_at=utcnow() + spec.approval.timeout))
            session.commit()
        decision = PolicyDecision(require_approval=True, outcome="require_approval", approvers=["support-leads"])
        db.call(decisions.save_decision, decision_id="d1", run_id=RUN, call_id="c1", package="p",
                document={"tool": {"name": "issue_refund"}}, decision=decision, raw={}, latency_ms=0, digest=DIG,
                idempotency_key=f"{RUN}:1:0", approval_id=APR, cause="proposed")
        self.acts = PeopleActivities(db=db, policy=None, model=None, registry=None,  # type: ignore[arg-type]
                                     verifier=Verifier(KEY.public_key()))
        self.acts._runs[RUN] = run
        self._env, self._calls = ActivityEnvironment(), 0

    def _next(self) -> ActivityEnvironment:
        self._calls += 1
        self._env.info = replace(self._env.info, workflow_id=RUN, workflow_run_id=WF_RUN,
                                 activity_id=f"activity-{self._calls}")
        return self._env

    async def verify(self, assertion: str, comment: str | None = None, source: str | None = None) -> str:
        person = await self._next().run(self.acts.verify_person, ask(assertion, comment, source))
        return person.name

    async def settle(self, assertion: str, status: str, comment: str | None = None, source: str | None = None,
                     **outcome: Any) -> bool:
        settled = SettleDecisionInput(run_id=RUN, decision=ask(assertion, comment, source), status=status,  # type: ignore[arg-type]
                                      **outcome)
        return (await self._next().run(self.acts.settle_decision, settled)).settled


def ask(assertion: str, comment: str | None = None, source: str | None = None) -> VerifyPersonInput:
    return VerifyPersonInput(run_id=RUN, approval_id=APR, digest=DIG, action="approve", assertion=assertion,
                             comment=comment, source=source)


def key_of(token: str) -> str:
    return decision_key(Authority(KEY).assertion_id(token))


def bobs_approval() -> str:
    return Authority(KEY).decide(user="bob", run_id=RUN, approval_id=APR, digest=DIG, action="approve")


def used(db: Database) -> list[str]:
    with Session(db.engine) as session:
        return [r.subject for r in session.exec(select(PersonAssertionRow)).all()]


async def test_a_withdrawn_decision_is_refused_however_its_token_is_spelled(tmp_path: Path) -> None:
    """PyJWT accepts a token with '==' appended (same claims, same jti): the record is found by the jti."""
    worker = Worker(tmp_path)
    token = bobs_approval()
    # The door queued it, the signal was not confirmed, the door withdrew it and told bob it does not count.
    worker.db.call(repo.queue_decision, key=key_of(token), approval_id=APR, run_id=RUN, by="bob", action="approve",
                   digest=DIG)
    assert worker.db.call(repo.withdraw_decision, key=key_of(token), reason="not delivered").status == "withdrawn"
    for copy in (token, token + "=="):
        assert Verifier(KEY.public_key()).verify(copy).jti == Authority(KEY).assertion_id(token)  # it verifies
        with pytest.raises(ApplicationError, match="this decision was withdrawn: not delivered; decide again"):
            await worker.verify(copy)
    assert used(worker.db) == []  # it counted nowhere


async def test_a_queued_decision_is_judged_as_of_when_it_was_queued_however_its_token_is_spelled(
        tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    token = Authority(KEY, ttl_s=-60).decide(user="bob", run_id=RUN, approval_id=APR, digest=DIG, action="approve")
    with pytest.raises(ApplicationError, match="has expired"):  # expired now, and never queued
        await worker.verify(token + "==")
    queued = worker.db.call(repo.queue_decision, key=key_of(token), approval_id=APR, run_id=RUN, by="bob",
                            action="approve", digest=DIG)
    worker.db.call(_backdate, key=queued.key, seconds=90)  # queued while its assertion was still valid
    assert await worker.verify(token + "==") == "bob"
    assert worker.db.call(repo.queued_decision, key=queued.key).status == "delivering"  # type: ignore[union-attr]


def _backdate(session: Session, *, key: str, seconds: int) -> None:
    from datetime import timedelta

    from engine.store.tables import QueuedDecisionRow

    row = session.get(QueuedDecisionRow, key)
    assert row is not None
    row.queued_at = utcnow() - timedelta(seconds=seconds)
    session.add(row)
    session.commit()


async def test_a_decision_is_recorded_before_it_counts_so_its_door_cannot_withdraw_it(tmp_path: Path) -> None:
    """The worker takes the update just as the door stops waiting: the door's queued record is the worker's,
    its withdrawal fails, and the person is told what the run made of it, never that it does not count."""
    worker = Worker(tmp_path)
    token = bobs_approval()
    assert await worker.verify(token) == "bob"  # the update, taken by a worker: no door queued anything
    taken = worker.db.call(repo.queued_decision, key=key_of(token))
    assert taken is not None and (taken.status, taken.door_queued, taken.by) == ("delivering", False, "bob")
    shown = worker.db.call(repo.get_approval, approval_id=APR)
    assert shown is not None and shown.queued == []  # the inbox shows only what a door queued
    queued = worker.db.call(repo.queue_decision, key=key_of(token), approval_id=APR, run_id=RUN, by="bob",
                            action="approve", digest=DIG)
    assert (queued.status, queued.door_queued) == ("delivering", True)
    assert worker.db.call(repo.withdraw_decision, key=key_of(token), reason="x").status == "delivering"  # type: ignore[union-attr]


async def test_the_door_reports_a_decision_the_late_update_applied_as_applied(tmp_path: Path) -> None:
    """The run applied the update (and settled it) but its answer came too late, and the run ended before the
    signal: the door must not withdraw it and say 'it does not count, decide again'."""
    worker = Worker(tmp_path)
    applied = asyncio.Event()

    async def update(payload: Any) -> Any:
        await worker.verify(payload.assertion, payload.comment, payload.source)
        assert await worker.settle(payload.assertion, "applied", payload.comment, payload.source, result="approved")
        applied.set()
        await asyncio.sleep(3600)  # the answer never comes back in time

    async def ended(payload: Any) -> None:
        assert applied.is_set()
        raise RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")

    told = await runs.decide_approval(FakeClient(FakeHandle(update, ended)), worker.db, Authority(KEY),  # type: ignore[arg-type]
                                      approval_id=APR, decision="approve", approver=BOB, comment="fine",
                                      source="cli:host", wait_s=1)
    assert (told.status, told.detail) == ("pending", "applied by the run: approved")
    assert used(worker.db) == ["bob"]
    [record] = worker.db.call(repo.get_approval, approval_id=APR).queued  # type: ignore[union-attr]
    assert (record.status, record.result) == ("applied", "approved")


async def test_only_a_delivery_its_assertion_is_bound_to_settles_the_decision(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    token = Authority(KEY).decide(user="bob", run_id=RUN, approval_id=APR, digest=DIG, action="approve",
                                  comment="fine")
    worker.db.call(repo.queue_decision, key=key_of(token), approval_id=APR, run_id=RUN, by="bob", action="approve",
                   digest=DIG, comment="fine")
    forged = Authority(Ed25519PrivateKey.generate()).decide(user="bob", run_id=RUN, approval_id=APR, digest=DIG,
                                                             action="approve", comment="fine")
    assert not await worker.settle(forged, "refused", "fine", reason="forged")
    assert not await worker.settle(token, "refused", "pay it twice", reason="another comment")  # not what bob signed
    assert worker.db.call(repo.queued_decision, key=key_of(token)).status == "queued"  # type: ignore[union-attr]
    assert await worker.settle(token + "==", "refused", "fine", reason="approval apr_x expired")
    settled = worker.db.call(repo.queued_decision, key=key_of(token))
    assert settled is not None and (settled.status, settled.reason) == ("refused", "approval apr_x expired")
