"""The treasury workflow on a real anvil: payments allowed, approved and denied, checked on chain."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle

from engine.adapters.chain_codec import to_units
from engine.adapters.chain_keys import deploy_token, transfer_token
from engine.config import Settings
from engine.local.devchain import DEPLOYER, dev_address, dev_key
from engine.present import described
from engine.runtime.worker import build_worker
from engine.spec import ResolvedSpec, load_spec
from engine.spec.script import dump_script
from engine.store import repo
from engine.store.db import Database, make_engine
from engine.store.repo import ApprovalView
from engine.store.tables import ApprovalRow, ChainTransactionRow, PolicyDecisionRow
from engine.store.users import Approver
from tests.conftest import DevChainNode
from tests.helpers import ROOT, decide_approval, start_run, wait_for_inbox

pytestmark = pytest.mark.integration

ACME, GLOBEX, STRANGER = dev_address(2), dev_address(3), "0x00000000000000000000000000000000DeaDBeef"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OPS = Approver(name="bob", roles=["treasury-approvers"])


def tusd(amount: str) -> int:
    return to_units(amount, 6)


def pay(to: str, amount: str, **overrides: Any) -> dict[str, Any]:
    return {"name": "transfer_token", "args": {"chain_id": 31337, "token": TOKEN, "to": to, "amount": amount,
                                               "memo": "INV-1", **overrides}}


def treasury_spec(tmp_path: Path, *calls: dict[str, Any], file: str = "treasury.yaml") -> ResolvedSpec:
    """The treasury workflow with its scripted model answering one call per turn (in the worker's folder)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / file.replace(".yaml", ".turns.yaml")
    script.write_text(dump_script({"turns": [{"tool_calls": [c]} for c in calls] + [{"content": "done"}]}))
    body = yaml.safe_load((ROOT / "workflows/treasury_payout.yaml").read_text())
    body.update(model={"provider": "scripted", "script": str(script)}, system_prompt_file=None,
                system_prompt="You pay invoices.")
    path = tmp_path / file
    path.write_text(yaml.safe_dump(body))
    return load_spec(path, project_dir=ROOT)


async def waiting_payment(client: Client, settings: Settings, tmp_path: Path, amount: str = "4800"
                          ) -> tuple[WorkflowHandle, ApprovalView]:
    """Start (on the running worker) a run paying Globex ``amount`` as alice; wait until it asks for approval."""
    handle = await start_run(client, task_queue=settings.temporal.task_queue, requested_by="alice", run_input={},
                             spec=treasury_spec(tmp_path, pay(GLOBEX, amount)))
    [item] = await wait_for_inbox(settings.db_url, handle.id)
    return handle, item


def sent_from_treasury(devchain: DevChainNode) -> int:
    return devchain.chain.nonce(devchain.treasury)


def balance(devchain: DevChainNode, who: str) -> int:
    return devchain.chain.token_balance(TOKEN, who)


async def test_the_demo_workflow_pays_waits_and_refuses(client: Client, chain_settings: Settings,
                                                        devchain: DevChainNode) -> None:
    settings = chain_settings
    spec = load_spec(ROOT / "workflows/treasury_payout.yaml", project_dir=ROOT)
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"message": "Pay this week's invoices."}, requested_by="alice")
        [item] = await wait_for_inbox(settings.db_url, handle.id)
        # The approver sees the simulation of the exact transaction and the facts it ran on.
        assert (item.tool, item.args["amount"], item.args["to"]) == ("transfer_token", "4800.00", GLOBEX)
        simulation = item.facts["simulation"]
        assert simulation["ok"] and simulation["method"] == "eth_simulateV1"
        assert [(c["account"], c["before"], c["after"], c["delta"]) for c in simulation["balance_changes"]] == [
            (devchain.treasury, "99750", "94950", "-4800"), (GLOBEX, "0", "4800", "+4800")]
        assert item.facts["chain"]["matches"] and item.facts["sent_today"] == "250"
        assert item.policy_reasons == ["payments above 1000 tUSD need one approval by treasury-approvers"]
        assert balance(devchain, GLOBEX) == 0  # nothing moves before the approval
        await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id,
                              decision="approve", approver=OPS, comment="Q4 freight confirmed")
        result = await handle.result()

    assert result.status == "completed"
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [
        ("get_balance", "executed"), ("transfer_token", "executed"), ("transfer_token", "executed"),
        ("transfer_token", "denied")]
    assert result.tool_calls[0].result["balance"] == "100000"
    assert result.tool_calls[3].decision.reasons == [f"recipient {STRANGER} is not on the payee list"]
    # On chain: two transfers from the treasury, the injected address got nothing.
    assert sent_from_treasury(devchain) == 2
    assert (balance(devchain, ACME), balance(devchain, GLOBEX), balance(devchain, STRANGER)) == (
        tusd("250"), tusd("4800"), 0)
    assert balance(devchain, devchain.treasury) == tusd("94950")
    paid = [c.result for c in result.tool_calls[1:3]]
    assert [devchain.chain.receipt(p["tx_hash"]).status for p in paid] == [1, 1]
    with Session(make_engine(settings.db_url)) as session:
        recorded = session.exec(select(ChainTransactionRow)).all()
        assert sorted((r.nonce, r.status, r.tx_hash) for r in recorded) == [
            (0, "mined", paid[0]["tx_hash"]), (1, "mined", paid[1]["tx_hash"])]
        denied = session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.outcome == "deny")).one()
        assert denied.input["facts"]["recipient"] == {"address": STRANGER, "is_contract": False}


async def test_denied_before_approval_on_chain_facts(client: Client, chain_settings: Settings,
                                                     devchain: DevChainNode, tmp_path: Path) -> None:
    impostor = deploy_token(devchain.chain, dev_key(5), name="Treasury USD", symbol="tUSD", decimals=6,
                            supply_units=tusd("1000000"))
    spec = treasury_spec(tmp_path, pay(ACME, "10", chain_id=1), pay(ACME, "10", token=impostor),
                         pay(ACME, "10", token=dev_address(6)), pay(ACME, "2000000"), pay(ACME, "0.0000001"))
    # Leave the treasury 500 tUSD, then ask for 900 (within limits, beyond the balance).
    transfer_token(devchain.chain, dev_key(1), TOKEN, dev_address(DEPLOYER), tusd("99500"))
    spec_more = treasury_spec(tmp_path, pay(GLOBEX, "900"), file="more.yaml")
    async with build_worker(client, chain_settings):
        results = []
        for s in (spec, spec_more):
            handle = await start_run(client, task_queue=chain_settings.temporal.task_queue, spec=s,
                                     run_input={}, requested_by="alice")
            results.append(await handle.result())
    calls = results[0].tool_calls + results[1].tool_calls
    assert [c.outcome for c in calls] == ["denied"] * 6
    reasons = [" | ".join(c.decision.reasons) for c in calls]
    assert "chain mismatch: the action is for chain 1" in reasons[0]
    assert f"token {impostor} is not on the allowlist" in reasons[1]
    assert f"token {dev_address(6)} is not on the allowlist" in reasons[2]
    assert "payments above 25000 tUSD are not allowed" in reasons[3]
    assert "does not fit a token with 6 decimals" in reasons[4]
    assert "insufficient balance: 500 tUSD held, 900 asked" in reasons[5]
    assert "simulation reverts: ERC20InsufficientBalance" in reasons[5]
    assert sent_from_treasury(devchain) == 1  # only the test's own transfer above
    assert balance(devchain, ACME) == balance(devchain, GLOBEX) == 0


async def test_unreachable_node_denies_the_action(client: Client, settings: Settings, devchain: DevChainNode,
                                                  tmp_path: Path) -> None:
    from engine.config import ChainSettings
    from engine.local import processes as stack

    settings.chain = ChainSettings(**devchain.chain_settings(rpc_url=f"http://127.0.0.1:{stack.free_port()}",
                                                             rpc_timeout_s=1))  # type: ignore[arg-type]
    spec = treasury_spec(tmp_path, pay(ACME, "10"))
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, run_input={},
                                 requested_by="alice")
        result = await handle.result()
    [call] = result.tool_calls
    assert result.status == "completed" and call.outcome == "denied"
    assert call.decision.reasons[0] == "facts unavailable"
    assert "ChainUnavailableError" in call.decision.reasons[1] and "failed" in call.decision.reasons[1]
    assert balance(devchain, ACME) == 0 and sent_from_treasury(devchain) == 0


async def test_funds_moved_after_approval_send_the_action_back_through_policy(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    db = Database(chain_settings.db_url)
    async with build_worker(client, chain_settings):
        handle, item = await waiting_payment(client, chain_settings, tmp_path)
        # Someone drains the treasury between the approval request and the approval.
        transfer_token(devchain.chain, dev_key(1), TOKEN, dev_address(DEPLOYER), tusd("96000"))
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=OPS)
        result = await handle.result()
    [call] = result.tool_calls
    assert call.outcome == "denied" and call.rechecks == 1
    assert "re-check before execution: sender.token_balance" in (call.recheck_reason or "")
    assert "the policy decided again: policy decided deny" in (call.recheck_reason or "")
    assert any("insufficient balance: 4000 tUSD held" in r for r in call.decision.reasons)
    assert balance(devchain, GLOBEX) == 0
    assert sent_from_treasury(devchain) == 1  # the drain only: no payment on the stale approval


async def test_changed_facts_the_policy_still_accepts_execute_on_the_approval_given(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    db = Database(chain_settings.db_url)
    async with build_worker(client, chain_settings):
        handle, first = await waiting_payment(client, chain_settings, tmp_path)
        # Another payment leaves the treasury between the approval request and the approval.
        transfer_token(devchain.chain, dev_key(1), TOKEN, dev_address(DEPLOYER), tusd("1000"))
        await decide_approval(client, db, approval_id=first.approval_id, decision="approve", approver=OPS)
        result = await handle.result()
    [call] = result.tool_calls
    assert (call.outcome, call.rechecks) == ("executed", 0)  # no second approval asked
    assert balance(devchain, GLOBEX) == tusd("4800")
    assert sent_from_treasury(devchain) == 2
    with Session(make_engine(chain_settings.db_url)) as session:
        decided = session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.run_id == handle.id)
                               .order_by(col(PolicyDecisionRow.created_at))).all()
        approvals = session.exec(select(ApprovalRow).where(ApprovalRow.run_id == handle.id)).all()
    # Both decisions are on the record, each with its own time and why it was made; the re-check saw the
    # approval in its input and the fresh balance in its facts.
    assert [(d.outcome, d.cause) for d in decided] == [
        ("require_approval", "proposed"),
        ("require_approval", "re-check before execution: sender.token_balance, simulation.balance_changes changed")]
    assert decided[0].created_at < decided[1].created_at
    assert decided[1].input["approved"] == {"by": ["bob"]} and decided[0].input["approved"] is None
    assert decided[1].input["facts"]["sender"]["token_balance"] == "99000"
    assert len(approvals) == 1
    # What `airlock runs show`, the run page and the API print: both decisions, the second with its cause.
    lines = [e.summary for e in described(db.call(repo.run_timeline, run_id=handle.id)) if e.kind == "policy"]
    assert len(lines) == 2 and "[" not in lines[0]
    assert lines[1].endswith("[re-check before execution: sender.token_balance, simulation.balance_changes "
                             "changed]")


async def test_concurrent_payments_from_one_treasury_all_execute_with_one_approval_each(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    """Thirty payments within limits, started at once: every one lands, gated ones with exactly one approval.

    Each payment moves the treasury's balance, today's total and the next one's simulation; the re-check
    before execution decides again on those facts instead of demanding they stay equal.
    """
    db = Database(chain_settings.db_url)
    amounts = ["1500.00" if i % 3 == 0 else "400.00" for i in range(30)]  # 10 gated, 20 automatic: 14000 tUSD
    specs = [treasury_spec(tmp_path, pay(ACME if i % 2 else GLOBEX, amount), file=f"pay{i}.yaml")
             for i, amount in enumerate(amounts)]
    async with build_worker(client, chain_settings):
        handles = await asyncio.gather(*(
            start_run(client, task_queue=chain_settings.temporal.task_queue, requested_by="alice", run_input={},
                      spec=spec) for spec in specs))
        gated = [h for h, amount in zip(handles, amounts, strict=True) if amount == "1500.00"]
        for handle in gated:  # one approval each, given as the requests appear
            [item] = await wait_for_inbox(chain_settings.db_url, handle.id, timeout=120)
            await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=OPS)
        # Bounded: a payment sent back for a second approval would wait for a person nobody sends.
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=180)
    outcomes = [(r.tool_calls[0].outcome, r.tool_calls[0].rechecks) for r in results]
    assert outcomes == [("executed", 0)] * 30, outcomes
    hashes = [r.tool_calls[0].result["tx_hash"] for r in results]
    assert len(set(hashes)) == 30 and all(devchain.chain.receipt(h).status == 1 for h in hashes)
    assert sent_from_treasury(devchain) == 30  # each payment sent once
    paid = {who: sum(tusd(a) for i, a in enumerate(amounts) if (ACME if i % 2 else GLOBEX) == who)
            for who in (ACME, GLOBEX)}
    assert (balance(devchain, ACME), balance(devchain, GLOBEX)) == (paid[ACME], paid[GLOBEX])
    with Session(make_engine(chain_settings.db_url)) as session:
        approvals = session.exec(select(ApprovalRow)).all()
    assert len(approvals) == 10 and all(a.status == "approved" for a in approvals)


async def test_concurrent_payments_never_pass_the_daily_limit_together(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    """Six approved payments of 8000 tUSD against a 40000 daily limit: each fits alone, five fit together.

    Each was decided (and approved) while nothing had been sent; the re-check before execution reads
    today's total, which counts every signed transaction before it is broadcast, under the account's lease.
    """
    db = Database(chain_settings.db_url)
    specs = [treasury_spec(tmp_path, pay(ACME, "8000"), file=f"big{i}.yaml") for i in range(6)]
    async with build_worker(client, chain_settings):
        handles = await asyncio.gather(*(
            start_run(client, task_queue=chain_settings.temporal.task_queue, requested_by="alice", run_input={},
                      spec=spec) for spec in specs))
        items = [(await wait_for_inbox(chain_settings.db_url, h.id, timeout=120))[0] for h in handles]
        assert all(i.facts["sent_today"] == "0" for i in items)  # decided before anything was sent
        for item in items:
            await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=OPS)
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=180)
    calls = [r.tool_calls[0] for r in results]
    assert sorted(c.outcome for c in calls) == ["denied"] + ["executed"] * 5
    [late] = [c for c in calls if c.outcome == "denied"]
    assert any("would pass the daily limit of 40000 (already sent 40000)" in r for r in late.decision.reasons)
    assert balance(devchain, ACME) == tusd("40000") and sent_from_treasury(devchain) == 5
