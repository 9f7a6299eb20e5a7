"""Deciding while no worker runs (issue 13): the person is told at once that the decision was accepted for
delivery, the inbox shows it as not applied yet, and when a worker is back it applies exactly once, or is
refused with the reason when it no longer counts. Through the engine, the CLI, the API and the pages."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowUpdateFailedError

from engine.boundary.identity import Authority
from engine.config import Settings
from engine.errors import ApprovalError
from engine.local import processes as stack
from engine.runtime import runs
from engine.runtime.payloads import ApprovalDecisionInput, RunResult
from engine.runtime.temporal import connect
from engine.runtime.worker import build_worker
from engine.store import repo, users
from engine.store.db import Database
from engine.store.tables import PersonAssertionRow, ToolExecutionRow
from engine.ui.app import create_app
from tests.helpers import ROOT, authority, decide_approval, grant, lead, waiting_refund
from tests.integration.test_api import bearer, make_people, sign_in
from tests.integration.test_cli import AIRLOCK, add_users, cli_env
from tools import support

pytestmark = pytest.mark.faults


def refunds(db_url: str) -> list[tuple[str, str]]:
    with Session(support.ledger(db_url)) as session:
        return [(r.order_id, str(r.amount)) for r in session.exec(select(support.Refund)).all()]


def counted(db: Database, approval_id: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Who the run counted on this approval (its votes) and whose assertions the worker used."""
    shown = db.call(repo.get_approval, approval_id=approval_id)
    assert shown is not None
    with Session(db.engine) as session:
        used = session.exec(select(PersonAssertionRow).where(PersonAssertionRow.approval_id == approval_id)).all()
    return [(v["by"], v["decision"]) for v in shown.votes], [(u.subject, u.action) for u in used]


async def test_a_decision_without_a_worker_is_queued_at_once_and_applies_once_when_one_is_back(
        client: Client, settings: Settings, tmp_path: Path) -> None:
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
    # No worker polls the task queue now.
    loop = asyncio.get_running_loop()
    started = loop.time()
    told = await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=lead("bob"),
                                 comment="checked with the carrier", wait_s=2)
    took = loop.time() - started
    assert told.status == "queued" and took < 8, (told, took)
    assert told.detail and "accepted for delivery" in told.detail and "will apply when a worker is back" in told.detail
    shown = db.call(repo.get_approval, approval_id=item.approval_id)
    assert shown is not None and shown.status == "pending" and shown.votes == []
    [waiting] = shown.waiting  # the inbox shows it, not applied yet
    assert (waiting.by, waiting.action, waiting.status, waiting.comment) == (
        "bob", "approve", "queued", "checked with the carrier")
    with pytest.raises(ApprovalError, match="bob already decided .* accepted for delivery"):
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=lead("bob"),
                              wait_s=2)
    await asyncio.sleep(2)
    assert refunds(settings.db_url) == []

    async with build_worker(client, settings):
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "completed"
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [("issue_refund", "executed")]
    assert refunds(settings.db_url) == [("A-1002", "180.00")]
    decided = db.call(repo.get_approval, approval_id=item.approval_id)
    assert decided is not None and decided.status == "approved" and decided.waiting == []
    [applied] = decided.queued
    assert (applied.status, applied.result, applied.reason) == ("applied", "approved", None)
    assert counted(db, item.approval_id) == ([("bob", "approve")], [("bob", "approve")])
    events = db.call(users.events_for, approval_id=item.approval_id)
    assert [(e.actor, e.action, e.comment) for e in events] == [("bob", "approve", "checked with the carrier")]
    with Session(db.engine) as session:
        [execution] = session.exec(select(ToolExecutionRow).where(ToolExecutionRow.run_id == handle.id)).all()
    assert (execution.status, execution.attempts) == ("succeeded", 1)


async def test_an_update_still_waiting_and_its_signal_both_arrive_and_count_once(
        client: Client, settings: Settings, tmp_path: Path) -> None:
    """The race of the issue: the update was admitted (its caller still waits) and the same decision was
    also signalled; when a worker comes, both reach the run, and the decision counts once."""
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
    grant(db, lead("bob"))
    payload = ApprovalDecisionInput(approval_id=item.approval_id, decision="approve", digest=item.digest,
                                    assertion=authority().decide(user="bob", run_id=handle.id,
                                                                 approval_id=item.approval_id, digest=item.digest,
                                                                 action="approve")).model_dump(mode="json")
    update = asyncio.ensure_future(handle.execute_update("decide_approval", payload, id="admitted-update"))
    await asyncio.sleep(1.5)
    await handle.signal("deliver_decision", payload)
    assert not update.done()
    async with build_worker(client, settings):
        try:
            answered = await asyncio.wait_for(update, 60)
        except WorkflowUpdateFailedError as exc:
            answered = str(getattr(exc.cause, "message", exc.cause))
        result = await asyncio.wait_for(handle.result(), 60)
    history = json.dumps((await handle.fetch_history()).to_json_dict())
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED" in history  # the signal reached the run ...
    # ... and so did the update: applied (then the signal counted nothing), or refused as the same decision.
    assert answered == {"approval_id": item.approval_id, "status": "approved", "approvals": 1, "needed": 1,
                        "detail": None} or answered == "this decision has reached the run already; it counts once"
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [("issue_refund", "executed")]
    assert refunds(settings.db_url) == [("A-1002", "180.00")]
    assert counted(db, item.approval_id) == ([("bob", "approve")], [("bob", "approve")])


async def test_a_queued_decision_counts_when_its_assertion_expired_before_a_worker_came(
        client: Client, settings: Settings, tmp_path: Path) -> None:
    """Judged as of when it was queued: the assertion was valid then (it lives 5 s; the worker comes after 8)."""
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
    short_lived = Authority(authority()._key, ttl_s=5)
    told = await runs.decide_approval(client, db, short_lived, approval_id=item.approval_id, decision="approve",
                                      approver=grant(db, lead("bob")), wait_s=1)
    assert told.status == "queued"
    await asyncio.sleep(8)
    async with build_worker(client, settings):
        result = await asyncio.wait_for(handle.result(), 60)
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [("issue_refund", "executed")]
    shown = db.call(repo.get_approval, approval_id=item.approval_id)
    assert shown is not None and [(q.status, q.result) for q in shown.queued] == [("applied", "approved")]


async def test_a_queued_decision_that_no_longer_counts_is_refused_with_the_reason(
        client: Client, settings: Settings, tmp_path: Path) -> None:
    """The approval expired before a worker came: the queued approval says so, and nothing was paid."""
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path, approval={"timeout": "6s"})
    told = await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=lead("bob"),
                                 wait_s=1)
    assert told.status == "queued"
    await asyncio.sleep(max(0.0, (item.expires_at - item.created_at).total_seconds() - 1) + 2)
    async with build_worker(client, settings):
        result = await asyncio.wait_for(handle.result(), 60)
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [("issue_refund", "expired")]
    assert refunds(settings.db_url) == []
    shown = db.call(repo.get_approval, approval_id=item.approval_id)
    assert shown is not None and shown.status == "expired"
    [refused] = shown.queued
    assert refused.status == "refused" and "expire" in (refused.reason or ""), refused
    assert counted(db, item.approval_id) == ([], [])


async def test_a_withdrawn_decision_is_refused_if_its_signal_arrives_after_all(
        client: Client, settings: Settings, tmp_path: Path) -> None:
    """The door told the person it did not count (the signal was not confirmed): a worker refuses it."""
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
        grant(db, lead("bob"))
        payload = ApprovalDecisionInput(approval_id=item.approval_id, decision="approve", digest=item.digest,
                                        assertion=authority().decide(user="bob", run_id=handle.id,
                                                                     approval_id=item.approval_id,
                                                                     digest=item.digest, action="approve"))
        key = runs.decision_key(authority().assertion_id(payload.assertion))
        db.call(repo.queue_decision, key=key, approval_id=item.approval_id, run_id=handle.id, by="bob",
                action="approve", digest=item.digest)
        assert db.call(repo.withdraw_decision, key=key, reason="it could not be delivered: test").status == \
            "withdrawn"
        await handle.signal("deliver_decision", payload.model_dump(mode="json"))
        for _ in range(100):
            history = json.dumps((await handle.fetch_history()).to_json_dict())
            if "settle_decision" in history:
                break
            await asyncio.sleep(0.1)
        shown = db.call(repo.get_approval, approval_id=item.approval_id)
        assert shown is not None and shown.status == "pending" and shown.votes == []
        [withdrawn] = shown.queued
        assert (withdrawn.status, withdrawn.reason) == ("withdrawn", "it could not be delivered: test")
        assert counted(db, item.approval_id) == ([], [])
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=lead("carol"))
        result = await asyncio.wait_for(handle.result(), 60)
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [("issue_refund", "executed")]
    assert counted(db, item.approval_id) == ([("carol", "approve")], [("carol", "approve")])


async def airlock(settings: Settings, *args: str) -> tuple[int, str, str]:
    """The CLI as a person runs it (``--as NAME`` proves it with NAME-password), deciding waits 1 s."""
    stdin = None
    if "--as" in args:
        stdin = f"{args[args.index('--as') + 1]}-password\n".encode()
        args = (*args, "--password-stdin")
    proc = await asyncio.create_subprocess_exec(
        *AIRLOCK, *args, cwd=ROOT, env={**cli_env(settings), "AIRLOCK_TEMPORAL__DECISION_WAIT_S": "1"},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_cli_says_queued_with_its_own_exit_code(client: Client, settings: Settings,
                                                          tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    add_users(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
    code, out, err = await airlock(settings, "approve", item.approval_id, "--as", "bob", "--comment", "ok")
    assert code == 3, (out, err)
    flat = " ".join(out.split())
    assert f"{item.approval_id}: queued — bob's approve was accepted for delivery at " in flat
    assert "will apply when a worker is back (no worker took it within 1 s)" in flat
    assert f"`airlock approvals show {item.approval_id}`" in flat
    code, out, _ = await airlock(settings, "approvals", "list")
    assert code == 0 and "waiting" in out  # the status column: 1 decision(s) waiting for a worker: bob
    code, out, _ = await airlock(settings, "approvals", "list", "--json")
    [listed] = json.loads(out)
    assert [(q["by"], q["action"], q["status"]) for q in listed["queued"]] == [("bob", "approve", "queued")]
    code, out, _ = await airlock(settings, "approvals", "show", item.approval_id)
    assert "queued decision: bob approve at" in out and "waiting for a worker" in out
    async with build_worker(client, settings):
        result = await asyncio.wait_for(client.get_workflow_handle(handle.id, result_type=RunResult).result(), 60)
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [("issue_refund", "executed")]
    code, out, _ = await airlock(settings, "approvals", "show", item.approval_id)
    assert "queued decision: bob approve at" in out and "applied (approved)" in out


@pytest.fixture
async def ui_alone(settings: Settings) -> AsyncIterator[str]:
    """The UI and API on a free port, with no worker anywhere."""
    settings.ui.port = stack.free_port()
    settings.temporal.decision_wait_s = 1
    app = create_app(settings, db=Database(settings.db_url), connect=lambda: connect(settings.temporal))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.ui.port, log_level="warning",
                                           proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{settings.ui.port}"
    server.should_exit = True
    await asyncio.to_thread(thread.join, 10)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_api_and_the_pages_say_queued_and_show_it(client: Client, settings: Settings, tmp_path: Path,
                                                             ui_alone: str) -> None:
    tokens = make_people(settings.db_url)
    async with build_worker(client, settings):
        handle, first = await waiting_refund(client, settings, tmp_path, amount="180.00")
    async with httpx.AsyncClient(base_url=ui_alone, timeout=30) as http:
        answer = await http.post(f"/api/approvals/{first.approval_id}/decision", headers=bearer(tokens["bob"]),
                                 json={"decision": "approve", "digest": first.digest, "comment": "fine"})
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "queued" and "will apply when a worker is back" in body["detail"]
        again = await http.post(f"/api/approvals/{first.approval_id}/decision", headers=bearer(tokens["bob"]),
                                json={"decision": "approve", "digest": first.digest})
        assert again.status_code == 409 and "already decided" in again.json()["error"]
        detail = (await http.get(f"/api/approvals/{first.approval_id}", headers=bearer(tokens["carol"]))).json()
        [queued] = detail["approval"]["queued"]
        assert (queued["by"], queued["action"], queued["status"]) == ("bob", "approve", "queued")
        # carol, in the browser: the inbox and the page show bob's decision waiting; hers is queued too.
        csrf = await sign_in(http, "carol")
        rows = (await http.get("/inbox/rows")).text
        assert 'data-queued="1"' in rows and "waiting for a worker: bob" in rows
        page = (await http.get(f"/approvals/{first.approval_id}")).text
        assert "data-queued-decisions" in page and "waiting for a worker" in page
        posted = await http.post(f"/approvals/{first.approval_id}/decide",
                                 data={"decision": "approve", "comment": "me too", "digest": first.digest,
                                       "csrf": csrf})
        assert posted.status_code == 303
        page = (await http.get(f"/approvals/{first.approval_id}")).text
        assert re.search(r'class="flash queued"[^>]*>Queued, not applied yet: carol&#39;s approve was accepted', page)
        assert "You already decided this action: carol&#39;s approve was accepted for delivery" in page
        async with build_worker(client, settings):
            result = await asyncio.wait_for(handle.result(), 60)
        detail = (await http.get(f"/api/approvals/{first.approval_id}", headers=bearer(tokens["carol"]))).json()
    # Both arrived: one approval closed the action, the other came too late and says so (who wins is up to
    # the race, as when two people click at once).
    [call] = result.tool_calls
    assert call.outcome == "executed"
    outcomes = sorted((q["status"], q["result"] or q["reason"]) for q in detail["approval"]["queued"])
    assert outcomes[0] == ("applied", "approved")
    # refused in the run's words or, when the store settled it first, in the store's (either is the last word)
    assert outcomes[1][0] == "refused" and ("already approved" in outcomes[1][1]
                                            or "was approved before this decision reached the run" in outcomes[1][1]
                                            ), outcomes
    assert refunds(settings.db_url) == [("A-1002", "180.00")]
