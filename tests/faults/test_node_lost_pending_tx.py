"""The node loses a payment in flight: the sender recovers it, the next payment is not held up, nothing is paid twice.

A real worker process, Temporal, OPA and anvil. The node is reset (``anvil_reset``: every block and its
pool are gone) while an approved payment waits for its receipt behind an earlier, mined one; or the
operator releases a payment stuck in the pool (``airlock senders release``), which then fails as dropped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from engine.config import Settings
from engine.local import processes as stack
from engine.local.devchain import deploy_demo_token, dev_address, dev_key
from engine.store.db import Database, make_engine
from engine.store.tables import ChainTransactionRow
from tests.conftest import DevChainNode
from tests.faults.test_worker_restart import start_worker
from tests.helpers import ROOT, decide_approval, start_run
from tests.integration.test_cli import cli_env
from tests.integration.test_treasury import ACME, GLOBEX, OPS, TOKEN, pay, treasury_spec, tusd, waiting_payment

pytestmark = pytest.mark.faults


def worker_env(devchain: DevChainNode, stuck_after_s: float = 2) -> dict[str, str]:
    return {"AIRLOCK_CHAIN__RPC_URL": devchain.url, "AIRLOCK_CHAIN__KEYSTORE_PATH": str(devchain.keystore),
            "AIRLOCK_CHAIN__KEYSTORE_PASSWORD_FILE": str(devchain.password_file),
            "AIRLOCK_CHAIN__RECEIPT_TIMEOUT_S": "20", "AIRLOCK_CHAIN__STUCK_AFTER_S": str(stuck_after_s)}


async def pay_and_finish(client: Client, settings: Settings, tmp_path: Path, to: str, amount: str, file: str):
    """A payment within the automatic limit, run to its end."""
    handle = await start_run(client, task_queue=settings.temporal.task_queue, requested_by="alice", run_input={},
                             spec=treasury_spec(tmp_path, pay(to, amount, memo=file), file=file))
    return (await asyncio.wait_for(handle.result(), 90)).tool_calls[0]


def recorded(db_url: str) -> list[ChainTransactionRow]:
    with Session(make_engine(db_url)) as session:
        return list(session.exec(select(ChainTransactionRow).order_by(ChainTransactionRow.created_at)).all())


async def sent_at(db_url: str, nonce: int) -> ChainTransactionRow:
    for _ in range(300):
        row = next((r for r in recorded(db_url) if r.nonce == nonce and r.status == "sent"), None)
        if row is not None:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"the worker never sent a transaction at nonce {nonce}")


async def test_a_node_reset_with_a_payment_in_flight_recovers_it_and_the_next_payment_follows(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    settings = chain_settings
    log = tmp_path / "worker.log"
    # (the gap is filled 5 s after it is seen: by then the test has deployed the token on the reset chain again)
    worker = start_worker(settings, log, worker_env(devchain, stuck_after_s=5))
    try:
        first = await pay_and_finish(client, settings, tmp_path, ACME, "250", "first.yaml")
        assert first.outcome == "executed" and first.result["nonce"] == 0
        handle, item = await waiting_payment(client, settings, tmp_path)  # 4800 to Globex: needs bob
        devchain.rpc("evm_setAutomine", False)  # it will wait in the pool for its receipt
        await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id, decision="approve",
                              approver=OPS)
        in_flight = await sent_at(settings.db_url, 1)
        devchain.rpc("anvil_reset")  # every block and the pool are gone: the account's nonce is 0 again
        devchain.rpc("evm_setAutomine", True)
        assert deploy_demo_token(devchain.chain) == TOKEN  # the same token, the treasury funded afresh
        result = await asyncio.wait_for(handle.result(), 120)
        third = await pay_and_finish(client, settings, tmp_path, ACME, "300", "third.yaml")
    finally:
        stack.stop_process(worker)
    [call] = result.tool_calls
    # The lost payment went out again as the same signed bytes (same hash: it cannot be mined twice) once
    # the nonce below it, lost with the reset, was filled by a no-op; the next payment was not held up.
    assert call.outcome == "executed", call.error
    assert (call.result["tx_hash"], call.result["nonce"]) == (in_flight.tx_hash, 1)
    assert third.outcome == "executed" and third.result["nonce"] == 2, third.error
    assert devchain.chain.nonce(devchain.treasury) == 3  # the no-op, the recovered payment, the next one
    # The payment the reset chain lost (250 to Acme) was not replayed: Acme has only the third payment.
    assert devchain.chain.token_balance(TOKEN, ACME) == tusd("300")
    assert devchain.chain.token_balance(TOKEN, GLOBEX) == tusd("4800")
    rows = recorded(settings.db_url)
    assert [(r.nonce, r.status, r.action.get("kind")) for r in rows] == [
        (0, "mined", "token_transfer"), (1, "mined", "token_transfer"), (0, "mined", "noop"),
        (2, "mined", "token_transfer")]
    assert devchain.chain.receipt(rows[2].tx_hash).status == 1
    assert "released" not in log.read_text() and dev_key(1).removeprefix("0x") not in log.read_text()


async def test_a_payment_the_pool_dropped_while_the_worker_was_down_is_sent_again_once(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    settings = chain_settings
    log = tmp_path / "worker.log"
    first = start_worker(settings, log, worker_env(devchain))
    second = None
    try:
        handle, item = await waiting_payment(client, settings, tmp_path)
        devchain.rpc("evm_setAutomine", False)
        await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id, decision="approve",
                              approver=OPS)
        in_flight = await sent_at(settings.db_url, 0)
        os.killpg(first.pid, signal.SIGKILL)  # `airlock down`, the hard way
        first.wait(10)
        devchain.rpc("anvil_dropAllTransactions")  # the node forgets its pool meanwhile
        assert not devchain.chain.known(in_flight.tx_hash)
        devchain.rpc("evm_setAutomine", True)
        second = start_worker(settings, log, worker_env(devchain))  # `airlock up`
        result = await asyncio.wait_for(handle.result(), 90)  # heartbeat timeout, then the retry recovers it
        after = await pay_and_finish(client, settings, tmp_path, ACME, "300", "after.yaml")
    finally:
        for proc in (first, second):
            if proc is not None:
                stack.stop_process(proc)
    [call] = result.tool_calls
    assert call.outcome == "executed", call.error
    assert (call.result["tx_hash"], call.result["nonce"]) == (in_flight.tx_hash, 0)
    assert call.result["note"] == "the node had lost it: the same signed transaction was broadcast again"
    assert after.outcome == "executed" and after.result["nonce"] == 1, after.error
    assert devchain.chain.nonce(devchain.treasury) == 2
    assert devchain.chain.token_balance(TOKEN, GLOBEX) == tusd("4800")
    assert [(r.nonce, r.status, r.broadcasts) for r in recorded(settings.db_url)] == [(0, "mined", 2), (1, "mined", 1)]


async def test_a_payment_stuck_in_the_pool_is_released_by_the_operator_and_fails_as_dropped(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    settings = chain_settings
    log = tmp_path / "worker.log"
    env = worker_env(devchain)
    worker = start_worker(settings, log, env)
    try:
        handle, item = await waiting_payment(client, settings, tmp_path)
        devchain.rpc("evm_setAutomine", False)  # nothing is mined: the payment sits in the pool
        await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id, decision="approve",
                              approver=OPS)
        stuck = await sent_at(settings.db_url, 0)
        await asyncio.sleep(2.5)  # past AIRLOCK_CHAIN__STUCK_AFTER_S
        doctor = await _airlock(settings, env, "doctor")
        assert doctor[0] == 1, doctor
        assert f"nonce 0 {stuck.tx_hash}" in doctor[1] and "airlock senders release --nonce 0" in doctor[1]
        releasing = asyncio.ensure_future(_airlock(settings, env, "senders", "release", "--nonce", "0", "--yes",
                                                   "--reason", "payee asked us to hold it"))
        noop = await _noop_sent(settings.db_url, releasing)  # it replaced the payment in the pool
        devchain.rpc("evm_mine")
        devchain.rpc("evm_setAutomine", True)
        released = await releasing
        assert released[0] == 0, released
        assert devchain.chain.receipt(noop.tx_hash) is not None
        assert "nonce 0 is released" in released[1]
        result = await asyncio.wait_for(handle.result(), 60)
        after = await pay_and_finish(client, settings, tmp_path, ACME, "300", "after.yaml")
        doctor_after = await _airlock(settings, env, "doctor")
    finally:
        stack.stop_process(worker)
    [call] = result.tool_calls
    assert call.outcome == "failed"
    assert call.error.startswith("TransactionDroppedError: ") and "nothing was paid" in call.error, call.error
    assert "released by the operator" in call.error and "payee asked us to hold it" in call.error
    assert after.outcome == "executed" and after.result["nonce"] == 1, after.error
    assert devchain.chain.token_balance(TOKEN, GLOBEX) == 0  # the released payment never happened
    assert devchain.chain.token_balance(TOKEN, ACME) == tusd("300")
    assert devchain.chain.receipt(stuck.tx_hash) is None
    rows = recorded(settings.db_url)
    assert [(r.nonce, r.status, r.action.get("kind")) for r in rows] == [
        (0, "dropped", "token_transfer"), (0, "mined", "noop"), (1, "mined", "token_transfer")]
    assert rows[1].action["reason"] == "payee asked us to hold it"
    assert doctor_after[0] == 0 and "no stuck transactions" in doctor_after[1], doctor_after
    for secret in (dev_key(1).removeprefix("0x"), devchain.password_file.read_text()):
        assert secret not in doctor[1] + doctor[2] + released[1] + released[2] + log.read_text()
    assert dev_address(1) in doctor[1]


async def _noop_sent(db_url: str, releasing: asyncio.Future) -> ChainTransactionRow:
    for _ in range(300):
        row = next((r for r in recorded(db_url) if r.action.get("kind") == "noop" and r.status == "sent"), None)
        if row is not None:
            return row
        assert not releasing.done(), releasing.result()
        await asyncio.sleep(0.1)
    raise AssertionError("the release never sent its no-op")


async def _airlock(settings: Settings, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine.cli", *args, cwd=ROOT,
                                                env={**cli_env(settings), **env}, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()

