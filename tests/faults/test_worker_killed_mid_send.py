"""Kill the worker after the transaction is sent and before its receipt: exactly one transaction on chain."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from engine.config import Settings
from engine.local import processes as stack
from engine.local.devchain import dev_address, dev_key
from engine.store.db import Database
from engine.store.tables import ChainTransactionRow, ToolExecutionRow
from engine.store.users import Approver
from tests.conftest import DevChainNode
from tests.faults.test_worker_restart import start_worker
from tests.helpers import decide_approval
from tests.integration.test_treasury import TOKEN, tusd, waiting_payment

pytestmark = pytest.mark.faults


async def test_worker_killed_between_send_and_receipt_sends_once(client: Client, chain_settings: Settings,
                                                                 devchain: DevChainNode, tmp_path: Path) -> None:
    settings = chain_settings
    globex = dev_address(3)
    env = {"AIRLOCK_CHAIN__RPC_URL": devchain.url, "AIRLOCK_CHAIN__KEYSTORE_PATH": str(devchain.keystore),
           "AIRLOCK_CHAIN__KEYSTORE_PASSWORD_FILE": str(devchain.password_file)}
    log = tmp_path / "worker.log"
    db = Database(settings.db_url)
    first = start_worker(settings, log, env)
    second = None
    try:
        handle, item = await waiting_payment(client, settings, tmp_path)
        devchain.rpc("evm_setAutomine", False)  # the transaction will sit in the pool: no receipt yet
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve",
                              approver=Approver(name="bob", roles=["treasury-approvers"]))
        row = await _sent(db.engine)
        os.killpg(first.pid, signal.SIGKILL)  # after the send, before the receipt
        first.wait(10)
        devchain.rpc("evm_mine")
        second = start_worker(settings, log, env)
        result = await asyncio.wait_for(handle.result(), 90)  # heartbeat timeout, then the retry resumes
    finally:
        for proc in (first, second):
            if proc is not None:
                stack.stop_process(proc)
    [call] = result.tool_calls
    assert call.outcome == "executed" and call.result["tx_hash"] == row.tx_hash
    assert devchain.chain.nonce(devchain.treasury) == 1  # exactly one transaction left the treasury
    assert devchain.chain.token_balance(TOKEN, globex) == tusd("4800")
    with Session(db.engine) as session:
        [recorded] = session.exec(select(ChainTransactionRow)).all()
        [execution] = session.exec(select(ToolExecutionRow).where(ToolExecutionRow.run_id == handle.id)).all()
    assert (recorded.status, recorded.broadcasts) == ("mined", 1)
    assert (execution.status, execution.attempts) == ("succeeded", 2)
    # The signing key and the keystore password never reach the history or the worker's log.
    history = (await handle.fetch_history()).to_json()
    for secret in (dev_key(1).removeprefix("0x"), devchain.password_file.read_text()):
        assert secret not in history and secret not in log.read_text()


async def _sent(engine) -> ChainTransactionRow:
    for _ in range(300):
        with Session(engine) as session:
            row = session.exec(select(ChainTransactionRow)).first()
        if row is not None and row.status == "sent":
            return row
        await asyncio.sleep(0.1)
    raise AssertionError("the worker never sent the transaction")
