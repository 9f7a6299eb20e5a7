"""Durable runs against a real Temporal dev server, OPA, scripted model and SQL (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from engine.config import Settings
from engine.errors import ApprovalError
from engine.runtime.activity_io import CallModelInput
from engine.runtime.runs import pending_actions
from engine.runtime.worker import build_worker
from engine.spec import load_spec
from engine.store import decisions, repo, users
from engine.store.db import Database, make_engine
from engine.store.tables import PolicyDecisionRow, ToolExecutionRow
from engine.store.users import Approver
from tests.helpers import (
    ROOT,
    decide_approval,
    lead,
    refund,
    run_to_end,
    start_run,
    wait_for_inbox,
    waiting_refund,
    write_spec,
)
from tools import support

pytestmark = pytest.mark.integration
CUSTOMER = {"customer_id": "cus_ana", "message": "please refund"}


def refunds(db_url: str) -> list[tuple[str, str]]:
    with Session(support.ledger(db_url)) as session:
        return [(r.order_id, str(r.amount)) for r in session.exec(select(support.Refund)).all()]


async def model_requests(client: Client, run_id: str) -> list[CallModelInput]:
    """What the workflow sent to the model, read back from its Temporal history."""
    history = await client.get_workflow_handle(run_id).fetch_history()
    out = []
    for event in history.events:
        attrs = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes") and attrs.activity_type.name == "call_model":
            [value] = await client.data_converter.decode(attrs.input.payloads, [CallModelInput])
            out.append(value)
    return out


def history_plaintext(node: object) -> str:
    """A history as text with every payload base64-decoded, to search for leaks."""
    if isinstance(node, dict):
        parts = [history_plaintext(v) for v in node.values()]
        if isinstance(node.get("data"), str) and "metadata" in node:
            parts.append(base64.b64decode(node["data"]).decode(errors="replace"))
        return "\n".join(parts)
    if isinstance(node, list):
        return "\n".join(history_plaintext(v) for v in node)
    return str(node)


def last_tool_message(requests: list[CallModelInput]) -> dict:
    return json.loads([m for m in requests[-1].messages if m["role"] == "tool"][-1]["content"])


async def test_demo_workflow_allows_approves_and_denies(client: Client, settings: Settings) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = load_spec(ROOT / "workflows/support_refund.yaml", project_dir=ROOT)
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input=CUSTOMER, requested_by="alice")
        [item] = await wait_for_inbox(settings.db_url, handle.id)
        assert (item.tool, item.args["amount"], item.requested_by) == ("issue_refund", "180.00", "alice")
        assert item.policy_reasons == ["refunds above 50 need one approval by support-leads"]
        assert item.approvers == ["support-leads"] and item.digest.startswith("sha256:")
        [pending] = await pending_actions(client, handle.id)
        assert pending.approval_id == item.approval_id
        outcome = await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id,
                                        decision="approve", approver=lead("bob"), comment="ok")
        assert outcome.status == "approved"
        result = await handle.result()

    assert result.status == "completed"
    assert [(c.tool, c.decision.outcome if c.decision else None, c.outcome) for c in result.tool_calls] == [
        ("lookup_order", "allow", "executed"),
        ("issue_refund", "allow", "executed"),
        ("issue_refund", "require_approval", "executed"),
        ("issue_refund", "deny", "denied"),
    ]
    assert result.tool_calls[3].decision.reasons == ["refunds above 500 are not allowed (asked 900.00)"]
    assert sorted(refunds(settings.db_url)) == [("A-1001", "25.00"), ("A-1002", "180.00")]
    db = Database(settings.db_url)
    with Session(db.engine) as session:
        decisions = session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.run_id == handle.id)).all()
        assert len(decisions) == 4
        assert all(d.revision and d.revision.startswith("sha256:") for d in decisions)
        denied = next(d for d in decisions if d.outcome == "deny")
        assert denied.input["tool"]["args"]["amount"] == "900.00"
        assert denied.input["actor"] == {"requested_by": "alice", "tenant": "default"}
        assert denied.input["facts"]["order"]["customer_id"] == "cus_ana"
        assert len(session.exec(select(ToolExecutionRow).where(ToolExecutionRow.run_id == handle.id)).all()) == 3
        approval = repo.get_approval(session, approval_id=item.approval_id)
        assert approval and approval.status == "approved" and approval.votes[0]["by"] == "bob"
        run = repo.get_run(session, run_id=handle.id)
        assert run and run.status == "completed" and run.finished_at is not None


async def test_invalid_arguments_return_to_model_and_skip_policy(client: Client, settings: Settings,
                                                                 tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "0.00")]}, {"content": "sorry"}])
    result = await run_to_end(client, settings, spec, CUSTOMER)
    requests = await model_requests(client, result.run_id)
    [call] = result.tool_calls
    assert call.outcome == "invalid" and call.decision is None
    assert "amount" in (call.error or "") and "greater than 0" in (call.error or "")
    assert last_tool_message(requests)["error"].startswith("invalid arguments: amount: Input should be greater")
    with Session(make_engine(settings.db_url)) as session:
        assert decisions.decisions_for_run(session, run_id=result.run_id) == []
    assert refunds(settings.db_url) == []


async def test_requester_cannot_approve_own_run(client: Client, settings: Settings, tmp_path: Path) -> None:
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path, "100.00")
        with pytest.raises(ApprovalError, match="alice started this run"):
            await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                                  approver=lead("alice"))
        assert refunds(settings.db_url) == []
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                              approver=lead("bob"))
        result = await handle.result()
        with pytest.raises(ApprovalError, match="already approved"):
            await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                                  approver=lead("carol"))
    assert result.tool_calls[0].outcome == "executed"
    assert refunds(settings.db_url) == [("A-1002", "100.00")]


async def test_rejection_reason_reaches_model(client: Client, settings: Settings, tmp_path: Path) -> None:
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path, "300.00")
        await decide_approval(client, db, approval_id=item.approval_id, decision="reject",
                              approver=lead("bob"), comment="customer already got a voucher")
        result = await handle.result()
        requests = await model_requests(client, handle.id)
    [call] = result.tool_calls
    assert call.outcome == "rejected" and call.error == "customer already got a voucher"
    assert last_tool_message(requests) == {"ok": False,
                                           "error": "rejected by approver: customer already got a voucher"}
    assert refunds(settings.db_url) == []
    with Session(db.engine) as session:
        row = repo.get_approval(session, approval_id=item.approval_id)
        assert row and row.status == "rejected" and row.reason == "customer already got a voucher"


async def test_refund_to_another_customers_order_denied(client: Client, settings: Settings,
                                                         tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("B-2001", "10.00")]}, {"content": "cannot"}])
    result = await run_to_end(client, settings, spec, CUSTOMER)
    [call] = result.tool_calls
    assert call.outcome == "denied"
    assert call.decision and call.decision.reasons == ["order B-2001 belongs to another customer"]
    assert refunds(settings.db_url) == []


async def test_tool_call_limit_ends_run_cleanly(client: Client, settings: Settings, tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1001"}}]},
                                 {"tool_calls": [refund("A-1001", "5.00")]}, {"content": "done"}],
                      limits={"max_steps": 5, "max_tool_calls": 1})
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert result.status == "limit_reached"
    assert result.reason == "max_tool_calls (1) reached; 1 proposed call(s) not executed"
    assert [c.tool for c in result.tool_calls] == ["lookup_order"]
    assert refunds(settings.db_url) == []


async def test_step_limit_ends_run_cleanly(client: Client, settings: Settings, tmp_path: Path) -> None:
    lookups = [{"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1001"}}]}] * 4
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, lookups, limits={"max_steps": 2, "max_tool_calls": 10})
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert (result.status, result.reason, result.steps) == ("limit_reached", "max_steps (2) reached", 2)
    with Session(make_engine(settings.db_url)) as session:
        run = repo.get_run(session, run_id=result.run_id)
        assert run and run.status == "limit_reached" and run.reason == "max_steps (2) reached"


async def test_python_spec_with_custom_graph_appends_receipt(client: Client, settings: Settings) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = load_spec(ROOT / "workflows/support_refund_strict.py", project_dir=ROOT)
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert result.status == "completed"
    assert result.output and result.output.startswith("I refunded 12.50 EUR for the lamp.")
    assert result.output.endswith("on order A-1001") and "Receipt (executed actions):" in result.output
    assert refunds(settings.db_url) == [("A-1001", "12.50")]


async def test_model_refusing_the_request_fails_run_cleanly(client: Client, settings: Settings,
                                                            tmp_path: Path) -> None:
    # the endpoint answers 400: the turn wants a JSON-schema answer the workflow (no output_schema) never asks for
    spec = write_spec(tmp_path, [{"content": "never read", "expect_response_format": True}])
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert result.status == "failed"
    assert result.reason and result.reason.startswith("call_model failed: ModelError: scripted model (turns.yaml)")
    with Session(make_engine(settings.db_url)) as session:
        run = repo.get_run(session, run_id=result.run_id)
        assert run and run.status == "failed" and run.reason == result.reason


async def test_openai_provider_reads_key_from_env_and_never_records_it(
        client: Client, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "turns.yaml"
    spec = write_spec(tmp_path, [{"content": "hello from an OpenAI-compatible endpoint"}],
                      model={"provider": "openai", "name": str(script), "base_url": settings.llm.scripted_url,
                             "api_key_env": "AIRLOCK_TEST_MODEL_KEY"})
    monkeypatch.setenv("AIRLOCK_TEST_MODEL_KEY", "sk-test-not-for-history")
    result = await run_to_end(client, settings, spec, CUSTOMER)
    history = history_plaintext((await client.get_workflow_handle(result.run_id).fetch_history()).to_json_dict())
    assert (result.status, result.output) == ("completed", "hello from an OpenAI-compatible endpoint")
    assert "sk-test-not-for-history" not in history and "AIRLOCK_TEST_MODEL_KEY" in history

    monkeypatch.delenv("AIRLOCK_TEST_MODEL_KEY")
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert result.status == "failed"
    assert result.reason == ("call_model failed: ModelError: environment variable AIRLOCK_TEST_MODEL_KEY "
                             "(model.api_key_env) is not set")


async def test_role_digest_and_audit_rules_hold_in_the_run(client: Client, settings: Settings,
                                                           tmp_path: Path) -> None:
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path, "100.00")
        with pytest.raises(ApprovalError, match=r"dave does not hold a role .* \(needs one of: support-leads\)"):
            await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                                  approver=Approver(name="dave", roles=["support"]))
        with pytest.raises(ApprovalError, match="is bound to action sha256:"):
            await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                                  approver=lead("bob"), digest="sha256:something-else")
        assert refunds(settings.db_url) == []
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                              approver=lead("bob"), digest=item.digest, source="203.0.113.9", comment="fine")
        await handle.result()
    with Session(db.engine) as session:
        [event] = users.events_for(session, approval_id=item.approval_id)
    assert (event.actor, event.action, event.digest, event.source, event.comment) == (
        "bob", "approve", item.digest, "203.0.113.9", "fine")
