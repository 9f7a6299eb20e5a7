"""The lease on an account outlives a dead worker while its action's execution is unfinished.

A retry of an execution that already began resumes it without a re-check (its effect may be under way). That
is safe only if no other action on the same account ran in between, so the lease such an execution holds does
not lapse while its run is still open: a second payment waits for the retry, then is decided on what the
first one did. The execute_tool activity runs in ActivityEnvironment with a real SQLite store; the question
"is the holder's run still open?" is answered by a stand-in here and by a real Temporal server in
tests/integration/test_lease.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from engine.errors import LeaseLostError
from engine.runtime.activities._actions import ActionActivities
from engine.runtime.activity_io import ExecuteToolInput, ReleaseLeaseInput
from engine.store import authority, executions, repo
from engine.store.tables import ActionLockRow, ToolExecutionRow, utcnow
from tests.unit.runtime.test_recheck import RUN, WF_RUN, WORLD, _decide, _env, _setup


def _daily_limit_of_one(document: dict[str, Any]) -> str:
    return "allow" if document["facts"]["sent_today"] < 1 else "deny"


class Runs:
    """Which workflow runs are open (the stand-in for Temporal's answer); every question is kept."""

    def __init__(self, open_: bool) -> None:
        self.open, self.asked = open_, []

    async def __call__(self, run_id: str, workflow_run_id: str) -> bool:
        self.asked.append((run_id, workflow_run_id))
        return self.open


def _lapse_every_lease(acts: ActionActivities) -> None:
    """Every worker was down for longer than the lease: its time ran out."""
    def lapse(session: Session) -> None:
        session.execute(update(ActionLockRow).values(expires_at=utcnow() - timedelta(minutes=1)))
        session.commit()
    acts._database.call(lapse)


async def _first_attempt_dies_after_starting(acts: ActionActivities, call: Any, workflow_run_id: str = WF_RUN) -> None:
    """The execution row is written, then the attempt fails before any effect (the node went away)."""
    WORLD["fail_once"] = True
    with pytest.raises(ApplicationError):
        await _env("exec-0", workflow_run_id).run(acts.execute_tool, ExecuteToolInput(run_id=RUN, call=call))
    rows = acts._database.call(lambda s: s.exec(select(ToolExecutionRow)).all())
    assert [r.status for r in rows] == ["started"] and WORLD["effects"] == []


async def _a_began_and_b_waits(tmp_path: Path, monkeypatch: Any,
                               open_: bool) -> tuple[ActionActivities, Runs, Any, Any]:
    """Two payments decided under a daily limit of one; A's first attempt began and died; whether A's run
    is open is ``open_``."""
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one)
    runs = Runs(open_=open_)
    monkeypatch.setattr(acts, "_workflow_open", runs)
    monkeypatch.setattr("engine.runtime.activities._actions.LOCK_POLL_S", 0.05)
    a, b = await _decide(acts, 0, "A-1001"), await _decide(acts, 1, "A-1002")
    await _first_attempt_dies_after_starting(acts, a)
    return acts, runs, a, b


async def test_a_lapsed_lease_of_an_unfinished_execution_keeps_other_payments_out(tmp_path: Path,
                                                                                  monkeypatch: Any) -> None:
    """The attack: a daily limit of one payment; A starts executing and its worker dies; all workers stay
    down past the lease; B comes first when they return. B must not take the account while A's retry (which
    skips the re-check) is still to come, or both are paid."""
    acts, runs, a, b = await _a_began_and_b_waits(tmp_path, monkeypatch, open_=True)
    _lapse_every_lease(acts)

    waiting = asyncio.create_task(_env("exec-1").run(acts.execute_tool, ExecuteToolInput(run_id=RUN, call=b)))
    await asyncio.sleep(1.0)
    assert not waiting.done(), "B took the account from A's unfinished execution"
    assert (RUN, WF_RUN) in runs.asked  # it asked whether A's run is still open before waiting on it
    retried = await _env("exec-0").run(acts.execute_tool, ExecuteToolInput(run_id=RUN, call=a))
    assert retried.ok and WORLD["effects"] == ["A-1001"]
    b_ran = await asyncio.wait_for(waiting, 10)
    assert WORLD["effects"] == ["A-1001"], f"both payments went out past a daily limit of one: {WORLD['effects']}"
    assert not b_ran.ok and b_ran.stale and "sent_today" in b_ran.changed  # decided on what A did


async def test_the_lease_of_a_closed_run_is_taken_over(tmp_path: Path, monkeypatch: Any) -> None:
    """A's run was terminated (no retry will come): B takes the account and is decided on fresh facts."""
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one)
    monkeypatch.setattr(acts, "_workflow_open", Runs(open_=False))
    a, b = await _decide(acts, 0, "A-1001"), await _decide(acts, 1, "A-1002")
    await _first_attempt_dies_after_starting(acts, a)
    _lapse_every_lease(acts)
    b_ran = await asyncio.wait_for(_env("exec-1").run(acts.execute_tool, ExecuteToolInput(run_id=RUN, call=b)), 10)
    assert b_ran.ok and WORLD["effects"] == ["A-1002"]


async def test_a_lease_that_has_not_lapsed_is_never_questioned(tmp_path: Path, monkeypatch: Any) -> None:
    """While A's lease runs, B waits without asking Temporal anything (the lease alone answers)."""
    acts, runs, _, b = await _a_began_and_b_waits(tmp_path, monkeypatch, open_=False)
    waiting = asyncio.create_task(_env("exec-1").run(acts.execute_tool, ExecuteToolInput(run_id=RUN, call=b)))
    await asyncio.sleep(0.5)
    assert not waiting.done() and runs.asked == []
    waiting.cancel()


async def test_a_lease_given_up_on_is_released_by_its_own_run_only(tmp_path: Path, monkeypatch: Any) -> None:
    """execute_tool gave up (retries exhausted): the workflow releases the lease its attempts held, so other
    actions on the account need not wait for the run to end; no other run can release it."""
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one)
    a = await _decide(acts, 0, "A-1001")
    await _first_attempt_dies_after_starting(acts, a)

    def held(session: Session) -> list[str]:
        return [r.holder for r in session.exec(select(ActionLockRow)).all()]

    assert acts._database.call(held) == [f"{WF_RUN}:exec-0"]
    stranger = _env("release-9", workflow_run_id="another-run")
    with pytest.raises(ApplicationError, match="not scheduled by run"):
        await stranger.run(acts.release_lease, ReleaseLeaseInput(run_id=RUN, activity_id="exec-0", ended=True))
    assert acts._database.call(held) == [f"{WF_RUN}:exec-0"]
    released = await _env("release-1").run(acts.release_lease,
                                            ReleaseLeaseInput(run_id=RUN, activity_id="exec-0", ended=True))
    assert released.released == 1 and acts._database.call(held) == []


async def test_a_lease_whose_last_attempt_may_still_run_lapses_at_its_time(tmp_path: Path) -> None:
    """The activity gave up on a timeout: its attempt's thread may still be running the tool, so the lease is
    not handed on at once; it is unbound from the execution and lapses like a dead worker's lease."""
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one)
    a = await _decide(acts, 0, "A-1001")
    await _first_attempt_dies_after_starting(acts, a)
    await _env("release-1").run(acts.release_lease, ReleaseLeaseInput(run_id=RUN, activity_id="exec-0"))
    db = acts._database
    assert [(r.holder, r.execution_key) for r in db.call(lambda s: s.exec(select(ActionLockRow)).all())] == \
        [(f"{WF_RUN}:exec-0", None)]
    assert not db.call(authority.take_lock, key="account-1", holder="h2", lease=timedelta(minutes=6)).taken
    _lapse_every_lease(acts)
    assert db.call(authority.take_lock, key="account-1", holder="h2", lease=timedelta(minutes=6)).taken


def test_an_execution_does_not_begin_under_a_lease_that_was_taken(tmp_path: Path) -> None:
    """The lease lapsed and another action took it between the re-check and the start: nothing is written,
    and the error is retryable (the retry takes the lease again and decides again)."""
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one)
    db = acts._database
    assert db.call(authority.take_lock, key="acct", holder="h1", lease=timedelta(minutes=6)).taken
    _lapse_every_lease(acts)
    assert db.call(authority.take_lock, key="acct", holder="h2", lease=timedelta(minutes=6)).taken
    with pytest.raises(LeaseLostError) as raised:
        _start(db, "h1")
    assert raised.value.retryable
    assert db.call(repo.get_execution, key="k1") is None
    _start(db, "h2")
    _lapse_every_lease(acts)  # h2's worker dies with the execution begun: h3 is kept out, h2 renews
    assert db.call(authority.take_lock, key="acct", holder="h3", lease=timedelta(minutes=6)).kept_for is not None
    assert db.call(authority.take_lock, key="acct", holder="h2", lease=timedelta(minutes=6)).taken
    db.call(repo.finish_execution, key="k1", ok=True, result={}, error=None, latency_ms=1.0)
    _lapse_every_lease(acts)  # finished: the lapsed lease is an ordinary one again
    assert db.call(authority.take_lock, key="acct", holder="h3", lease=timedelta(minutes=6)).taken


def _start(db: Any, holder: str) -> None:
    db.call(repo.start_execution, key="k1", run_id=RUN, call_id="c0", tool="issue_refund", args={},
            digest="sha256:d", lease=("acct", holder, timedelta(minutes=6)))


def test_a_lease_bound_between_a_takers_read_and_its_delete_stays(tmp_path: Path, monkeypatch: Any) -> None:
    """h1 stalled past its lease, then begins its execution right after h2 read the (still unbound) lease:
    h2's delete must not remove the lease h1 just bound."""
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one)
    db = acts._database
    assert db.call(authority.take_lock, key="acct", holder="h1", lease=timedelta(minutes=6)).taken
    _lapse_every_lease(acts)
    real = authority._unfinished

    def h1_begins_now(session: Any, holder: str, execution_key: Any) -> Any:
        _start(db, "h1")
        return real(session, holder, execution_key)

    monkeypatch.setattr(authority, "_unfinished", h1_begins_now)
    answer = db.call(authority.take_lock, key="acct", holder="h2", lease=timedelta(minutes=6))
    rows = db.call(lambda s: [(r.holder, r.execution_key) for r in s.exec(select(ActionLockRow)).all()])
    assert not answer.taken and rows == [("h1", "k1")], rows


def test_a_lease_taken_just_before_the_bind_is_never_bound(tmp_path: Path, monkeypatch: Any) -> None:
    """h2 takes h1's lapsed lease just before h1 binds it: h1's execution does not begin (LeaseLostError)
    and h2's lease stays h2's, unbound."""
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one)
    db = acts._database
    assert db.call(authority.take_lock, key="acct", holder="h1", lease=timedelta(minutes=6)).taken
    _lapse_every_lease(acts)
    real = executions.bind_lock

    def h2_takes_it_first(session: Any, **kwargs: Any) -> None:
        assert db.call(authority.take_lock, key="acct", holder="h2", lease=timedelta(minutes=6)).taken
        real(session, **kwargs)

    monkeypatch.setattr(executions, "bind_lock", h2_takes_it_first)
    with pytest.raises(LeaseLostError):
        _start(db, "h1")
    rows = db.call(lambda s: [(r.holder, r.execution_key) for r in s.exec(select(ActionLockRow)).all()])
    assert rows == [("h2", None)] and db.call(repo.get_execution, key="k1") is None


def _locks(db: Any) -> list[tuple[str, str]]:
    return db.call(lambda s: sorted((r.lock_key, r.holder) for r in s.exec(select(ActionLockRow)).all()))


def test_the_lease_is_given_back_with_the_record_of_how_the_action_ended(tmp_path: Path, monkeypatch: Any) -> None:
    """One transaction: the account is free exactly when the record says the action ended, and only the
    holder's own lease is given back."""
    acts, _, _ = _setup(tmp_path, _daily_limit_of_one)
    db = acts._database
    assert db.call(authority.take_lock, key="acct", holder="h1", lease=timedelta(minutes=6)).taken
    assert db.call(authority.take_lock, key="other", holder="h9", lease=timedelta(minutes=6)).taken
    _start(db, "h1")

    def broken_commit(session: Any, **kwargs: Any) -> None:
        raise RuntimeError("the store went away before the commit")

    with monkeypatch.context() as patched:
        patched.setattr(executions, "release_lock", broken_commit)
        with pytest.raises(RuntimeError):
            db.call(repo.finish_execution, key="k1", ok=True, result={"refund_id": "re_1"}, error=None,
                    latency_ms=1.0, release=("acct", "h1"))
    # nothing was written: still unfinished, still held
    assert db.call(repo.get_execution, key="k1").status == "started"  # type: ignore[union-attr]
    assert _locks(db) == [("acct", "h1"), ("other", "h9")]
    db.call(repo.finish_execution, key="k1", ok=True, result={"refund_id": "re_1"}, error=None, latency_ms=1.0,
            release=("acct", "h1"))
    assert db.call(repo.get_execution, key="k1").status == "succeeded"  # type: ignore[union-attr]
    assert _locks(db) == [("other", "h9")]
    db.call(repo.finish_execution, key="k1", ok=True, result={}, error=None, latency_ms=1.0,
            release=("other", "h1"))  # not h1's: kept
    assert _locks(db) == [("other", "h9")]
