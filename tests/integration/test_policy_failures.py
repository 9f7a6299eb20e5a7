"""Fail closed: OPA unreachable, undefined or malformed decisions, and quorum, on a real OPA."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from engine.boundary.policy import OpaPolicy
from engine.cli import render
from engine.config import OpaSettings, Settings
from engine.errors import ApprovalError
from engine.local import processes as stack
from engine.runtime.payloads import RunResult
from engine.runtime.runs import run_progress
from engine.runtime.worker import build_worker
from engine.store import decisions
from engine.store.db import Database, make_engine
from engine.store.users import Approver
from tests.helpers import decide_approval, refund, run_to_end, start_run, wait_for_inbox, write_spec
from tools import support

pytestmark = pytest.mark.integration
CUSTOMER = {"customer_id": "cus_ana"}
OPS_BOB, OPS_CAROL = (Approver(name=n, roles=["treasury-ops"]) for n in ("bob", "carol"))

async def _run_once(client: Client, settings: Settings, tmp_path: Path, policy: str | None = None) -> RunResult:
    support.reset_demo_ledger(settings.db_url)
    overrides = {"policy": policy} if policy else {}
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "5.00")]}, {"content": "ok"}], **overrides)
    return await run_to_end(client, settings, spec, CUSTOMER)


def _ledger_empty(db_url: str) -> bool:
    with Session(support.ledger(db_url)) as session:
        return session.exec(select(support.Refund)).first() is None


async def test_unreachable_opa_denies_and_records(client: Client, settings: Settings, tmp_path: Path) -> None:
    settings.opa = OpaSettings(url=f"http://127.0.0.1:{stack.free_port()}", timeout_s=0.5)
    result = await _run_once(client, settings, tmp_path)
    [call] = result.tool_calls
    assert call.outcome == "denied" and call.decision
    assert call.decision.reasons[0] == "policy unavailable"
    assert _ledger_empty(settings.db_url)
    with Session(make_engine(settings.db_url)) as session:
        [row] = decisions.decisions_for_run(session, run_id=result.run_id)
    assert row["outcome"] == "deny" and row["result"]["reasons"][0] == "policy unavailable"


@pytest.mark.parametrize("package, detail", [
    ("airlock.test.undefined", "decision is undefined"),
    ("airlock.test.malformed", "decision is malformed"),
    ("airlock.test.missing", "no policy module declares package airlock.test.missing"),
])
async def test_undefined_or_malformed_decision_denies(client: Client, settings: Settings, tmp_path: Path,
                                                      odd_opa: str, package: str, detail: str) -> None:
    settings.opa = OpaSettings(url=odd_opa)
    result = await _run_once(client, settings, tmp_path, policy=package)
    [call] = result.tool_calls
    assert call.outcome == "denied" and call.decision
    assert call.decision.reasons[0] == "policy unavailable"
    assert call.decision.reasons[1].startswith(detail)
    assert _ledger_empty(settings.db_url)


async def test_quorum_needs_two_distinct_approvers(client: Client, settings: Settings, tmp_path: Path,
                                                   odd_opa: str) -> None:
    settings.opa = OpaSettings(url=odd_opa)
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "5.00")]}, {"content": "ok"}],
                      policy="airlock.test.quorum")
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input=CUSTOMER, requested_by="alice")
        [item] = await wait_for_inbox(settings.db_url, handle.id)
        assert item.min_approvals == 2
        first = await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                                      approver=OPS_BOB)
        assert (first.status, first.approvals, first.needed) == ("pending", 1, 2)
        progress = await run_progress(client, handle.id)  # what `airlock run --wait` shows
        [waiting] = progress.waiting
        assert (progress.status, progress.step, progress.activity) == ("waiting_approval", 1, "waiting for approval")
        assert (waiting.approvers, waiting.needed, waiting.approved_by) == (["treasury-ops"], 2, ["bob"])
        assert "Needs 2 approval(s) from treasury-ops; 1/2 so far (bob)." in \
            render.progress_lines(progress)[item.approval_id]
        with pytest.raises(ApprovalError, match="bob already decided"):
            await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                                  approver=OPS_BOB)
        assert _ledger_empty(settings.db_url)
        second = await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                                       approver=OPS_CAROL)
        assert second.status == "approved"
        result = await handle.result()
        progress = await run_progress(client, handle.id)
    assert result.tool_calls[0].outcome == "executed"
    assert sorted(v.by for v in result.tool_calls[0].votes) == ["bob", "carol"]
    assert (progress.status, progress.activity, progress.waiting) == ("completed", "finished", [])
    assert progress.usage["model_calls"] == 2


async def test_revision_changes_when_policy_changes(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    policy = folder / "rev.rego"
    policy.write_text('package airlock.rev\nimport rego.v1\ndecision := {"allow": true, "reasons": ["v1"]}\n')
    port = stack.free_port()
    opa = OpaPolicy(OpaSettings(url=f"http://127.0.0.1:{port}"))
    decisions = []
    for text in (policy.read_text(), policy.read_text().replace("true", "false").replace("v1", "v2")):
        policy.write_text(text)  # OPA serves a bundle until it stops: a change takes a new start, as with `airlock up`
        proc = stack.launch_opa(port, folder, tmp_path / "opa.log", tethered=True)
        try:
            decisions.append((await opa.evaluate("airlock.rev", {}))[0])
        finally:
            stack.stop_process(proc)
    first, second = decisions
    assert first.outcome == "allow" and second.outcome == "deny" and second.reasons == ["v2"]
    assert first.revision and second.revision and first.revision != second.revision
