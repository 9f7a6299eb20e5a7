"""Decisions delivered by signal (sent when no worker took the update in time) obey every rule the update
path does: each attack below, sent as a signal from a plain Temporal client, is refused with its reason
(recorded by the run's ``settle_decision``, as every delivery's outcome is) and counts for nothing; a
delivery counts once however many ways (and spellings of its token) it arrives."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle

from engine.boundary.identity import Authority
from engine.config import OpaSettings, Settings
from engine.runtime.worker import build_worker
from engine.store import repo
from engine.store.db import Database
from engine.store.tables import PersonAssertionRow, QueuedDecisionRow
from engine.store.users import Approver
from tests.helpers import authority, grant, refund, start_run, wait_for_inbox, write_spec
from tools import support

pytestmark = pytest.mark.integration
OPS_BOB, OPS_CAROL = Approver(name="bob", roles=["treasury-ops"]), Approver(name="carol", roles=["treasury-ops"])


async def settled(handle: WorkflowHandle[Any, Any], count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """What the run recorded for each delivery it applied or refused (``settle_decision`` inputs), once there
    are ``count`` of them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = []
        for event in (await handle.fetch_history()).events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled = event.activity_task_scheduled_event_attributes
                if scheduled.activity_type.name == "settle_decision":
                    found.append(json.loads(scheduled.input.payloads[0].data))
        if len(found) >= count:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(found)} of {count} decisions settled: {found}")
        await asyncio.sleep(0.2)


def used(db: Database, approval_id: str) -> list[tuple[str, str]]:
    """Whose verified assertions the store holds for this approval: what execution counts (per person)."""
    with Session(db.engine) as session:
        rows = session.exec(select(PersonAssertionRow).where(PersonAssertionRow.approval_id == approval_id)).all()
    return sorted({(r.subject, r.action) for r in rows})


async def test_every_attack_by_signal_is_refused_and_a_delivery_counts_once(
        client: Client, settings: Settings, tmp_path: Path, odd_opa: str) -> None:
    settings.opa = OpaSettings(url=odd_opa)  # two approvals by treasury-ops: the action stays open to attack
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "5.00")]}, {"content": "ok"}],
                      policy="airlock.test.quorum")
    db = Database(settings.db_url)
    grant(db, OPS_BOB), grant(db, OPS_CAROL)
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"}, requested_by="alice")
        [item] = await wait_for_inbox(settings.db_url, handle.id)
        apr, digest, run_id = item.approval_id, item.digest, handle.id

        def signed(user: str, action: str = "approve", *, on: str = digest, key: Authority | None = None,
                   args: dict[str, Any] | None = None, comment: str | None = None) -> str:
            return (key or authority()).decide(user=user, run_id=run_id, approval_id=apr, digest=on,
                                               action=action, args=args, comment=comment)  # type: ignore[arg-type]

        def decision(assertion: str, action: str = "approve", **extra: Any) -> dict[str, Any]:
            return {"approval_id": apr, "decision": action, "digest": digest, "assertion": assertion, **extra}

        # bob's approval, applied through the update: one of two.
        bobs = decision(signed("bob"))
        assert (await handle.execute_update("decide_approval", bobs))["status"] == "pending"
        attacks = {
            "unsigned": ("deliver_decision", decision("")),
            "forged key": ("deliver_decision",
                           decision(signed("carol", key=Authority(Ed25519PrivateKey.generate())))),
            "replayed as it was": ("deliver_decision", bobs),  # the same delivery again: it counted already
            "replayed, token re-spelled": ("deliver_decision", {**bobs, "assertion": bobs["assertion"] + "=="}),
            "replayed, comment swapped": ("deliver_decision", {**bobs, "comment": "pay it twice"}),
            "the requester": ("deliver_decision", decision(signed("alice"))),
            "a stale digest": ("deliver_decision", {**decision(signed("carol", on="sha256:old")),
                                                    "digest": "sha256:old"}),
            "signed for another digest": ("deliver_decision", decision(signed("carol", on="sha256:old"))),
            "a reject token to approve": ("deliver_decision", decision(signed("carol", "reject", comment="no"))),
            "reject without a reason": ("deliver_decision", decision(signed("carol", "reject"), "reject")),
            "bob a second time": ("deliver_decision", decision(signed("bob"))),
            "edit with other args": ("deliver_edit", {"approval_id": apr, "digest": digest,
                                                      "args": {**item.args, "amount": "4.00"},
                                                      "assertion": signed("carol", "edit",
                                                                          args={**item.args, "amount": "1.00"})}),
        }
        for signal, payload in attacks.values():
            await handle.signal(signal, payload)
        await handle.signal("deliver_decision", {**decision(signed("carol")), "by": "carol"})  # malformed: dropped
        # bob's update and each attack but the two copies of bob's delivery, which are the update's.
        records = await settled(handle, len(attacks) - 1)
        by_delivery: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
        for r in records:
            sent = r["decision"]
            by_delivery.setdefault((sent["assertion"], sent["comment"]), []).append(
                (r["status"], r["reason"] or r["result"] or ""))
        outcome = {name: by_delivery.get((payload["assertion"], payload.get("comment")), [])
                   for name, (_, payload) in attacks.items()}
        assert outcome["unsigned"] == [("refused", "no signed assertion: the person must sign in (UI, API token, "
                                                   "or the CLI with a password)")]
        assert "Signature verification failed" in outcome["forged key"][0][1]
        # bob's assertion, sent three times more: the same delivery (also spelled otherwise) counts once, as
        # the update applied it, and a copy with another comment is not what bob signed.
        assert outcome["replayed as it was"] == [("applied", "pending: 1 of 2 approvals")]
        assert outcome["replayed, token re-spelled"] == []  # nothing of its own: it is the update's delivery
        [(status, reason)] = outcome["replayed, comment swapped"]
        assert status == "refused" and "for another comment or source" in reason
        assert outcome["the requester"] == [("refused", "alice started this run and cannot decide its actions")]
        assert "is bound to action" in outcome["a stale digest"][0][1]
        assert "on sha256:old, not approve of" in outcome["signed for another digest"][0][1]
        assert "is for reject" in outcome["a reject token to approve"][0][1]
        assert outcome["reject without a reason"] == [("refused", "a rejection needs a reason; it goes back to the "
                                                                  "model")]
        assert outcome["bob a second time"] == [("refused", f"bob already decided approval {apr}")]
        assert "other arguments than this edit's" in outcome["edit with other args"][0][1]
        assert all(status == "refused" for name, results in outcome.items() for status, _ in results
                   if name != "replayed as it was")
        # What became of each recorded decision: bob's applied; the second assertion bob signed refused.
        with Session(db.engine) as session:
            records_of = {(q.by, q.status) for q in session.exec(select(QueuedDecisionRow).where(
                QueuedDecisionRow.approval_id == apr)).all()}
        assert records_of == {("bob", "applied"), ("bob", "refused")}
        # Nothing counted but bob's one approval; the run still waits, and goes on when carol approves.
        shown = db.call(repo.get_approval, approval_id=apr)
        assert shown is not None and shown.status == "pending"
        assert [(v["by"], v["decision"]) for v in shown.votes] == [("bob", "approve")]
        assert used(db, apr) == [("bob", "approve")]
        assert (await handle.query("get_status")) == "waiting_approval"
        await handle.signal("deliver_decision", decision(signed("carol")))
        result = await asyncio.wait_for(handle.result(), 60)
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [("issue_refund", "executed")]
    assert sorted(v.by for v in result.tool_calls[0].votes) == ["bob", "carol"]
    assert used(db, apr) == [("bob", "approve"), ("carol", "approve")]


async def test_a_signal_and_an_update_of_one_decision_at_once_count_once(
        client: Client, settings: Settings, tmp_path: Path, odd_opa: str) -> None:
    settings.opa = OpaSettings(url=odd_opa)
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "5.00")]}, {"content": "ok"}],
                      policy="airlock.test.quorum")
    db = Database(settings.db_url)
    grant(db, OPS_BOB), grant(db, OPS_CAROL)
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"}, requested_by="alice")
        [item] = await wait_for_inbox(settings.db_url, handle.id)
        payload = {"approval_id": item.approval_id, "decision": "approve", "digest": item.digest,
                   "assertion": authority().decide(user="bob", run_id=handle.id, approval_id=item.approval_id,
                                                   digest=item.digest, action="approve")}
        update = asyncio.ensure_future(handle.execute_update("decide_approval", payload))
        await handle.signal("deliver_decision", payload)
        try:
            answered: Any = (await update)["status"]
        except Exception as exc:  # noqa: BLE001 - refused as the same delivery, whichever came second
            answered = str(getattr(getattr(exc, "cause", exc), "message", exc))
        [record] = await settled(handle, 1)
        assert answered in ("pending", "this decision has reached the run already; it counts once")
        assert (record["status"], record["result"]) == ("applied", "pending: 1 of 2 approvals")
        shown = db.call(repo.get_approval, approval_id=item.approval_id)
        assert shown is not None and [(v["by"], v["decision"]) for v in shown.votes] == [("bob", "approve")]
        assert used(db, item.approval_id) == [("bob", "approve")]
