"""The policy contract of docs/ holds for real runs: every input the worker sent to OPA matches
``docs/policy-input.schema.json`` and every answer OPA gave matches ``docs/policy-decision.schema.json``.

Real runs through the real stack (Temporal, OPA serving ``policies/``, the scripted model, SQLite and
PostgreSQL, anvil for the treasury): allowed, approved, denied, rejected, edited and expired actions, and the
re-check before execution. What OPA was asked is taken twice: as the worker's policy adapter sent it, and as
the audit trail stored it; both must agree and both must validate.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from temporalio.client import Client

from engine.boundary.decision import canonical_json
from engine.boundary.policy import OpaPolicy
from engine.config import Settings
from engine.runtime.worker import build_worker
from engine.store import decisions, repo
from engine.store.db import Database
from engine.store.repo import ApprovalView
from engine.store.users import Approver
from tests.conftest import DevChainNode
from tests.helpers import ROOT, decide_approval, edit_action, lead, refund, start_run, write_spec
from tools import support

pytestmark = pytest.mark.integration

INPUT = Draft202012Validator(json.loads((ROOT / "docs/policy-input.schema.json").read_text()))
DECISION = Draft202012Validator(json.loads((ROOT / "docs/policy-decision.schema.json").read_text()))
CUSTOMER_EMAIL = support.CUSTOMERS["cus_ana"]["email"]

Exchange = tuple[dict[str, Any], Any]  # (the input as sent, OPA's answer)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Exchange]:
    """Every input the worker's policy adapter sent to OPA during the test, with OPA's answer."""
    exchanges: list[Exchange] = []
    evaluate = OpaPolicy.evaluate

    async def recording(self: OpaPolicy, package: str, document: dict[str, Any]) -> Any:
        decision, raw, latency = await evaluate(self, package, document)
        exchanges.append((json.loads(json.dumps(document)), raw))  # as it travels: JSON
        return decision, raw, latency

    monkeypatch.setattr(OpaPolicy, "evaluate", recording)
    return exchanges


def problems(validator: Draft202012Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(document)]


def check_contract(db_url: str, run_ids: list[str], exchanges: list[Exchange]) -> list[dict[str, Any]]:
    """Validate every exchange and every stored decision of ``run_ids``; the two must be the same documents.
    Returns the stored decisions, oldest first."""
    db = Database(db_url)
    stored = [d for run_id in run_ids for d in db.call(decisions.decisions_for_run, run_id=run_id)]
    mine = [(doc, raw) for doc, raw in exchanges if doc["workflow"]["run_id"] in run_ids]
    assert sorted(canonical_json(d["input"]) for d in stored) == sorted(canonical_json(doc) for doc, _ in mine)
    for doc, raw in mine:
        assert problems(INPUT, doc) == [], canonical_json(doc)[:2000]
        assert isinstance(raw, dict), f"OPA gave no decision for {doc['tool']['name']}: {raw!r}"
        assert problems(DECISION, raw) == [], raw
        # The shipped policies answer through policies/envelope.rego: exactly the contract's keys.
        assert set(raw) == {"allow", "require_approval", "approvers", "min_approvals", "reasons"}
    for row in stored:
        assert problems(INPUT, row["input"]) == [], row["decision_id"]
        assert problems(DECISION, row["raw"]) == [], row["decision_id"]
    return stored


async def next_approval(db_url: str, run_id: str, seen: set[str], timeout: float = 60.0) -> ApprovalView:
    """The run's next pending approval, one not in ``seen`` (which it joins)."""
    db = Database(db_url)
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        fresh = [a for a in db.call(repo.list_approvals, run_id=run_id) if a.approval_id not in seen]
        if fresh:
            seen.add(fresh[0].approval_id)
            return fresh[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} asked for no new approval within {timeout} s")


def outcomes(result: Any) -> list[tuple[str, str]]:
    return [(c.tool, c.outcome) for c in result.tool_calls]


async def test_support_runs_send_what_the_schema_describes(client: Client, settings: Settings, tmp_path: Path,
                                                           sent: list[Exchange]) -> None:
    db = Database(settings.db_url)
    message = ("Refund 20.00 on A-1001, 180.00 on A-1002 and 100.00 on A-1003, then email me. "
               "Ticket T-3001 has the details.")
    turns = [
        {"tool_calls": [{"name": "read_ticket", "args": {"ticket_id": "T-3001"}},
                        {"name": "lookup_order", "args": {"order_id": "A-1002"}}]},
        # allowed and gated in one turn: the gated one's re-check sees the first executed, and its approval
        {"tool_calls": [refund("A-1001", "20.00"), refund("A-1002", "180.00")]},
        {"tool_calls": [refund("A-1003", "100.00")]},  # rejected: the run goes on
        {"tool_calls": [refund("A-1003", "90.00")]},  # edited down to 40.00 by a lead, then allowed
        {"content": "Writing to the customer.",
         "tool_calls": [{"name": "send_email", "args": {"to": CUSTOMER_EMAIL, "subject": "Your refunds",
                                                        "body": "Your refunds are on their way."}}]},
        {"content": "done"},
    ]
    tools = ["tools.support:lookup_order", "tools.support:read_ticket", "tools.support:issue_refund",
             "tools.support:send_email"]
    spec = write_spec(tmp_path, turns, tools=tools)
    expiring = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "200.00")]},
                                     {"tool_calls": [refund("A-1001", "10.00")]}, {"content": "done"}],
                          spec_file="expiring.yaml", name="refund-expiring", approval={"timeout": "2s"})
    async with build_worker(client, settings):
        # The shipped demo: a lookup and a 25 EUR refund allowed, 180 EUR approved, 900 EUR denied.
        support.reset_demo_ledger(settings.db_url)
        demo = await start_run(client, task_queue=settings.temporal.task_queue, spec="support-refund",
                               run_input={"customer_id": "cus_ana", "message": "My lamp broke and the chair was late."})
        seen: set[str] = set()
        item = await next_approval(settings.db_url, demo.id, seen)
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=lead("bob"))
        demo_result = await demo.result()

        support.reset_demo_ledger(settings.db_url)
        mixed = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                run_input={"customer_id": "cus_ana", "message": message})
        item = await next_approval(settings.db_url, mixed.id, seen)  # 180.00 on A-1002
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=lead("bob"))
        item = await next_approval(settings.db_url, mixed.id, seen)  # 100.00 on A-1003
        await decide_approval(client, db, approval_id=item.approval_id, decision="reject", approver=lead("bob"),
                              comment="already refunded by voucher")
        item = await next_approval(settings.db_url, mixed.id, seen)  # 90.00 on A-1003
        await edit_action(client, db, approval_id=item.approval_id, approver=lead("carol"), digest=item.digest,
                          args={"order_id": "A-1003", "amount": "40.00", "reason": "agreed on the phone"})
        mixed_result = await mixed.result()

        support.reset_demo_ledger(settings.db_url)
        expired = await start_run(client, task_queue=settings.temporal.task_queue, spec=expiring,
                                  run_input={"customer_id": "cus_ana"})
        expired_result = await expired.result()  # nobody decides: the approval expires after 2 s

    assert (demo_result.status, outcomes(demo_result)) == ("completed", [
        ("lookup_order", "executed"), ("issue_refund", "executed"), ("issue_refund", "executed"),
        ("issue_refund", "denied")])
    # A rejection ends that action only: the run goes on to its next actions and completes.
    assert (mixed_result.status, outcomes(mixed_result)) == ("completed", [
        ("read_ticket", "executed"), ("lookup_order", "executed"), ("issue_refund", "executed"),
        ("issue_refund", "executed"), ("issue_refund", "rejected"), ("issue_refund", "executed"),
        ("send_email", "executed")])
    assert (expired_result.status, outcomes(expired_result)) == ("completed", [
        ("issue_refund", "expired"), ("issue_refund", "executed")])

    stored = check_contract(settings.db_url, [demo.id, mixed.id, expired.id], sent)
    inputs = {(d["run_id"], d["cause"], d["input"]["tool"]["args"].get("amount")): d["input"] for d in stored}
    # The contract's claims, on what was really sent.
    recheck = next(i for (run, cause, amount), i in inputs.items()
                   if run == mixed.id and amount == "180.00" and cause.startswith("re-check before execution"))
    assert recheck["approved"] == {"by": ["bob"]}
    assert recheck["run"]["calls"] == {"read_ticket": 1, "lookup_order": 1, "issue_refund": 1}
    email = next(i for i in (d["input"] for d in stored) if i["tool"]["name"] == "send_email")
    assert [(p["tool"], p["outcome"]) for p in email["run"]["previous"]] == [
        ("read_ticket", "executed"), ("lookup_order", "executed"), ("issue_refund", "executed"),
        ("issue_refund", "executed"), ("issue_refund", "rejected"), ("issue_refund", "executed")]
    assert email["run"]["calls"] == {"read_ticket": 1, "lookup_order": 1, "issue_refund": 3}  # executed only
    assert email["run"]["previous"][0]["trusted"] == ["customer_id", "ticket_id"]
    assert email["run"]["previous"][0]["result"]["ticket_id"] == "T-3001"
    assert email["run"]["previous"][4]["result"] is None  # rejected: never ran
    edited = next(i for (run, cause, amount), i in inputs.items() if run == mixed.id and amount == "40.00")
    assert edited["approved"] is None
    assert "person:carol" in {s["from"] for s in edited["provenance"]["amount"]["sources"]}
    after_expiry = next(i for (run, _, amount), i in inputs.items() if run == expired.id and amount == "10.00")
    assert [p["outcome"] for p in after_expiry["run"]["previous"]] == ["expired"]
    assert after_expiry["run"]["calls"] == {}
    small = next(i for (run, _, amount), i in inputs.items() if run == demo.id and amount == "25.00")
    assert small["approved"] is None and small["facts"]["order"]["customer_id"] == "cus_ana"
    # A-1001: in the user's message (trusted) and in the ticket's body (a third party's text).
    traced = next(i for (run, _, amount), i in inputs.items() if run == mixed.id and amount == "20.00")
    sources = {(s["from"], s["field"], s["trusted"], s["call_id"] is not None)
               for s in traced["provenance"]["order_id"]["sources"]}
    assert {("user", "input.message", True, False), ("tool:read_ticket", "body", False, True)} <= sources
    assert traced["provenance"]["order_id"]["trusted"] is True
    lookup = next(i for i in (d["input"] for d in stored) if i["tool"]["name"] == "lookup_order")
    assert lookup["facts"] == {} and not lookup["tool"]["consequential"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_treasury_demo_sends_what_the_schema_describes(client: Client, chain_settings: Settings,
                                                             devchain: DevChainNode, sent: list[Exchange]) -> None:
    settings = chain_settings
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec="treasury-payout",
                                 run_input={"message": "Pay this week's invoices."})
        item = await next_approval(settings.db_url, handle.id, set())
        await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id, decision="approve",
                              approver=Approver(name="bob", roles=["treasury-approvers"]))
        result = await handle.result()
    assert outcomes(result) == [("get_balance", "executed"), ("transfer_token", "executed"),
                                ("transfer_token", "executed"), ("transfer_token", "denied")]
    stored = check_contract(settings.db_url, [handle.id], sent)
    payments = [d["input"] for d in stored if d["input"]["tool"]["name"] == "transfer_token"]
    assert len(payments) >= 3 and all(p["tool"]["consequential"] and p["facts"]["chain"]["matches"] for p in payments)
    assert {p["facts"]["token"]["symbol"] for p in payments} == {"tUSD"}
    [balance] = [d["input"] for d in stored if d["input"]["tool"]["name"] == "get_balance"]
    assert balance["facts"] == {} and balance["run"]["previous"] == []
