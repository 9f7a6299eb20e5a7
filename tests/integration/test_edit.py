"""Edit before approving: an edited action is a new action that crosses the whole boundary again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from temporalio.client import Client

from engine.config import Settings
from engine.errors import ToolArgumentsError
from engine.runtime.worker import build_worker
from engine.store import repo, users
from engine.store.db import Database
from engine.store.tables import PolicyDecisionRow
from tests.helpers import decide_approval, edit_action, lead, wait_for_inbox, waiting_refund
from tests.integration.test_runs import model_requests
from tools import support

pytestmark = pytest.mark.integration


def _refunded(db_url: str) -> int:
    with Session(support.ledger(db_url)) as session:
        return int(support.refunded_total(session, "A-1002"))


async def test_edit_down_to_the_automatic_limit_executes_without_new_approval(
        client: Client, settings: Settings, tmp_path: Path) -> None:
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
        edited = await edit_action(client, db, approval_id=item.approval_id, approver=lead("bob"),
                                   args={"order_id": "A-1002", "amount": "40.00", "reason": "partial delay"},
                                   digest=item.digest, comment="40 is what we agreed on the phone")
        assert edited.status == "edited"
        result = await handle.result()
        requests = await model_requests(client, handle.id)
    [call] = result.tool_calls
    assert (call.outcome, call.args["amount"], call.edited_by, call.revision) == ("executed", "40.00", "bob", 1)
    assert call.decision and call.decision.outcome == "allow" and call.previous_args["amount"] == "180.00"
    assert _refunded(settings.db_url) == 40
    told = json.loads([m for m in requests[-1].messages if m["role"] == "tool"][-1]["content"])
    assert told["note"].startswith("bob edited the arguments before approving")
    with Session(db.engine) as session:
        old = repo.get_approval(session, approval_id=item.approval_id)
        assert old and old.status == "edited"
        [event] = users.events_for(session, approval_id=item.approval_id)
        assert (event.actor, event.action, event.comment) == ("bob", "edit", "40 is what we agreed on the phone")
        # the decision on the edited arguments knows bob wrote them (his assertion was bound to exactly these)
        after = session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.run_id == handle.id)
                             .order_by(col(PolicyDecisionRow.created_at))).all()[-1]
    seen = after.input["provenance"]
    assert seen["amount"]["trusted"] and ("person:bob", "amount") in [
        (s["from"], s["field"]) for s in seen["amount"]["sources"]]
    assert seen["reason"]["sources"][0]["from"] == "person:bob"


async def test_edit_that_still_needs_approval_gets_a_new_digest(client: Client, settings: Settings,
                                                                tmp_path: Path) -> None:
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
        await edit_action(client, db, approval_id=item.approval_id, approver=lead("bob"),
                          args={"order_id": "A-1002", "amount": "120.00", "reason": "delay"}, digest=item.digest)
        [second] = await wait_for_inbox(settings.db_url, handle.id)  # only the new action is pending
        assert second.approval_id != item.approval_id and second.digest != item.digest
        assert second.args["amount"] == "120.00"
        assert _refunded(settings.db_url) == 0
        await decide_approval(client, db, approval_id=second.approval_id, decision="approve",
                              approver=lead("carol"), digest=second.digest)
        result = await handle.result()
    assert result.tool_calls[0].outcome == "executed" and _refunded(settings.db_url) == 120


async def test_edit_cannot_skip_a_rule(client: Client, settings: Settings, tmp_path: Path) -> None:
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
        with pytest.raises(ToolArgumentsError, match="amount"):
            await edit_action(client, db, approval_id=item.approval_id, approver=lead("bob"),
                              args={"order_id": "A-1002", "amount": "-3", "reason": "x"}, digest=item.digest)
        with Session(db.engine) as session:
            unchanged = repo.get_approval(session, approval_id=item.approval_id)
            assert unchanged and unchanged.status == "pending"
        await edit_action(client, db, approval_id=item.approval_id, approver=lead("bob"),
                          args={"order_id": "A-1002", "amount": "900.00", "reason": "all of it"}, digest=item.digest)
        result = await handle.result()
    [call] = result.tool_calls
    assert call.outcome == "denied" and call.decision
    assert "refunds above 500 are not allowed (asked 900.00)" in call.decision.reasons
    assert _refunded(settings.db_url) == 0
