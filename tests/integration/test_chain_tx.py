"""Sending exactly once on a real anvil: retries, lost transactions, reverts, nonces, confirmations, keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import update
from sqlmodel import Session, col, select

from engine.adapters.chain import Chain
from engine.adapters.chain_access import ChainAccess
from engine.adapters.chain_tx import Signer, TxSender
from engine.config import ChainSettings
from engine.errors import ChainUnavailableError, InputError, TransactionDroppedError, TransactionRevertedError
from engine.local import processes as stack
from engine.local.devchain import deploy_demo_token, dev_address, dev_key
from engine.store import authority, repo
from engine.store.db import Database, make_engine
from engine.store.tables import ActionLockRow, ChainTransactionRow, RunRow, utcnow
from tests.conftest import ROOT, DevChainNode

pytestmark = pytest.mark.integration

ACME, GLOBEX = dev_address(2), dev_address(3)


def sender(devchain: DevChainNode, db_url: str, **options: float) -> TxSender:
    return TxSender(devchain.chain, Database(db_url), Signer(dev_key(1)), chain_id=31337, **options)  # type: ignore[arg-type]


def pay(devchain: DevChainNode, units: int, to: str = ACME) -> dict[str, object]:
    return {"to": devchain.token, "data": devchain.chain.erc20_data("transfer", to, units)}


def rows(db_url: str) -> list[ChainTransactionRow]:
    with Session(make_engine(db_url)) as session:
        return list(session.exec(select(ChainTransactionRow).order_by(  # a no-op shares its nonce: oldest first
            col(ChainTransactionRow.nonce), col(ChainTransactionRow.created_at))).all())


def test_a_retry_after_the_send_waits_for_the_same_transaction(devchain: DevChainNode, db_url: str) -> None:
    devchain.rpc("evm_setAutomine", False)
    first = sender(devchain, db_url, receipt_timeout_s=0.5)
    with pytest.raises(ChainUnavailableError, match="not mined after 0.5s; it stays recorded"):
        first.send_once("run:1:0", pay(devchain, 250_000_000), asset=devchain.token, amount_units=250_000_000)
    [row] = rows(db_url)
    assert row.status == "sent"
    devchain.rpc("evm_mine")
    again = sender(devchain, db_url).send_once("run:1:0", pay(devchain, 250_000_000))
    assert (again.tx_hash, again.status, again.nonce) == (row.tx_hash, "mined", 0)
    assert sender(devchain, db_url).send_once("run:1:0", pay(devchain, 250_000_000)).replayed
    assert devchain.chain.nonce(devchain.treasury) == 1  # one transaction on chain, not three
    assert devchain.chain.token_balance(devchain.token, ACME) == 250_000_000


def test_a_transaction_the_node_lost_is_broadcast_again_not_signed_again(devchain: DevChainNode, db_url: str) -> None:
    devchain.rpc("evm_setAutomine", False)
    with pytest.raises(ChainUnavailableError):
        sender(devchain, db_url, receipt_timeout_s=0.3).send_once("run:1:0", pay(devchain, 5_000_000))
    [row] = rows(db_url)
    devchain.rpc("anvil_dropTransaction", row.tx_hash)
    assert not devchain.chain.known(row.tx_hash)
    devchain.rpc("evm_setAutomine", True)
    sent = sender(devchain, db_url).send_once("run:1:0", pay(devchain, 5_000_000))
    assert sent.tx_hash == row.tx_hash
    assert rows(db_url)[0].broadcasts == 2
    assert devchain.chain.nonce(devchain.treasury) == 1
    assert devchain.chain.token_balance(devchain.token, ACME) == 5_000_000


def test_concurrent_actions_get_distinct_nonces(devchain: DevChainNode, db_url: str) -> None:
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            sender(devchain, db_url).send_once(f"run-{i}:1:0", pay(devchain, 1_000_000 * (i + 1)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(r.nonce for r in rows(db_url)) == list(range(6))
    assert {r.status for r in rows(db_url)} == {"mined"}
    assert devchain.chain.nonce(devchain.treasury) == 6
    assert devchain.chain.token_balance(devchain.token, ACME) == 21_000_000


def test_a_mined_revert_is_reported_with_its_reason_and_never_resent(devchain: DevChainNode, db_url: str) -> None:
    devchain.rpc("evm_setAutomine", False)
    both = 60_000 * 10**6  # each fits the 100000 balance alone; together they do not
    for key in ("run:1:0", "run:2:0"):
        with pytest.raises(ChainUnavailableError):
            sender(devchain, db_url, receipt_timeout_s=0.2).send_once(key, pay(devchain, both))
    devchain.rpc("evm_mine")
    assert sender(devchain, db_url).send_once("run:1:0", pay(devchain, both)).status == "mined"
    with pytest.raises(TransactionRevertedError, match=r"reverted in block \d+: ERC20InsufficientBalance\(") as exc:
        sender(devchain, db_url).send_once("run:2:0", pay(devchain, both))
    assert exc.value.tx_hash == rows(db_url)[1].tx_hash
    with pytest.raises(TransactionRevertedError):  # asked again: the record answers, nothing is sent
        sender(devchain, db_url).send_once("run:2:0", pay(devchain, both))
    assert [r.status for r in rows(db_url)] == ["mined", "reverted"]
    assert devchain.chain.nonce(devchain.treasury) == 2


def test_a_transaction_that_would_revert_is_never_signed(devchain: DevChainNode, db_url: str) -> None:
    with pytest.raises(TransactionRevertedError, match="would revert: ERC20InsufficientBalance"):
        sender(devchain, db_url).send_once("run:1:0", pay(devchain, 200_000 * 10**6))
    assert rows(db_url) == []
    assert devchain.chain.nonce(devchain.treasury) == 0


def test_waits_for_the_configured_confirmations(devchain: DevChainNode, db_url: str) -> None:
    def mine_later() -> None:
        time.sleep(0.6)
        devchain.rpc("evm_mine")
        devchain.rpc("evm_mine")

    miner = threading.Thread(target=mine_later)
    started = time.monotonic()
    miner.start()
    sent = sender(devchain, db_url, confirmations=3).send_once("run:1:0", pay(devchain, 1))
    miner.join()
    assert time.monotonic() - started >= 0.6
    assert devchain.chain.block_number() - sent.block_number + 1 >= 3


def test_unreachable_node_during_send_is_retryable_and_signs_nothing(db_url: str, devchain: DevChainNode) -> None:
    dead = TxSender(Chain(f"http://127.0.0.1:{stack.free_port()}", timeout_s=1), Database(db_url),
                    Signer(dev_key(1)), chain_id=31337)
    with pytest.raises(ChainUnavailableError) as exc:
        dead.send_once("run:1:0", pay(devchain, 1))
    assert exc.value.retryable
    assert rows(db_url) == []


def test_keys_come_from_a_keystore_and_never_show(devchain: DevChainNode, tmp_path: Path, db_url: str) -> None:
    secret = dev_key(1)
    settings = ChainSettings(**devchain.chain_settings())  # type: ignore[arg-type]
    access = ChainAccess.from_settings(settings, Database(db_url))
    assert access.address == devchain.treasury
    assert secret.removeprefix("0x") not in repr(access) + repr(access.sender().signer) + repr(settings)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    with pytest.raises(InputError, match="cannot decrypt it"):
        Signer.from_settings(settings.model_copy(update={"keystore_password_file": wrong}))
    with pytest.raises(InputError, match="no password"):
        Signer.from_settings(settings.model_copy(update={"keystore_password_file": None}))
    assert Signer.from_settings(ChainSettings(signer_key=secret)).address == Account.from_key(secret).address  # type: ignore[arg-type]
    assert Signer.from_settings(ChainSettings()) is None


# --- a node that loses transactions: the sender recovers, nothing jams, nothing is paid twice ----------------


def test_a_reset_node_with_a_payment_in_flight_gets_it_sent_again_and_the_next_one_follows(
        devchain: DevChainNode, db_url: str) -> None:
    first = sender(devchain, db_url).send_once("run:1:0", pay(devchain, 250_000_000))
    devchain.rpc("evm_setAutomine", False)
    with pytest.raises(ChainUnavailableError):
        sender(devchain, db_url, receipt_timeout_s=0.3).send_once("run:2:0", pay(devchain, 5_000_000, GLOBEX))
    waiting = rows(db_url)[1]
    devchain.rpc("anvil_reset")  # blocks and pool gone: nonce 0 (mined) and nonce 1 (waiting) with them
    devchain.rpc("evm_setAutomine", True)
    assert deploy_demo_token(devchain.chain) == devchain.token
    # (its gas was estimated for a payee whose balance was zero then too: the reset chain's state is not the same)
    sent = sender(devchain, db_url, stuck_after_s=0.5).send_once("run:2:0", pay(devchain, 5_000_000, GLOBEX))
    assert (sent.tx_hash, sent.nonce) == (waiting.tx_hash, 1)  # the same signed transaction, never another
    assert sent.note and "nonce 0 below it, which the node had lost, filled with no-ops" in sent.note
    after = sender(devchain, db_url).send_once("run:3:0", pay(devchain, 1_000_000))
    assert after.nonce == 2
    assert devchain.chain.nonce(devchain.treasury) == 3
    assert devchain.chain.token_balance(devchain.token, GLOBEX) == 5_000_000
    assert devchain.chain.token_balance(devchain.token, ACME) == 1_000_000  # not the 250 the reset chain lost
    assert devchain.chain.receipt(first.tx_hash) is None  # never replayed
    assert [(r.nonce, r.status, r.action.get("kind")) for r in sorted(rows(db_url), key=lambda r: r.created_at)] \
        == [(0, "mined", None), (1, "mined", None), (0, "mined", "noop"), (2, "mined", None)]


def test_a_payment_another_wallet_outbid_at_its_nonce_is_dropped_and_the_next_one_goes(
        devchain: DevChainNode, db_url: str) -> None:
    devchain.rpc("evm_setAutomine", False)
    with pytest.raises(ChainUnavailableError):
        sender(devchain, db_url, receipt_timeout_s=0.3).send_once("run:1:0", pay(devchain, 5_000_000))
    [stuck] = rows(db_url)
    fees = {k: v * 3 for k, v in devchain.chain.fees().items()}  # the same key, used elsewhere, at nonce 0
    signed = Account.from_key(dev_key(1)).sign_transaction(
        {"to": dev_address(4), "value": 1, "nonce": 0, "gas": 21_000, "chainId": 31337, "type": 2, **fees})
    devchain.chain.send_raw("0x" + bytes(signed.raw_transaction).hex())
    devchain.rpc("evm_mine")
    devchain.rpc("evm_setAutomine", True)
    with pytest.raises(TransactionDroppedError, match=r"nonce 0\) was never mined and never will be: a "
                                                      "transaction Airlock did not send") as exc:
        sender(devchain, db_url).send_once("run:1:0", pay(devchain, 5_000_000))
    assert exc.value.tx_hash == stuck.tx_hash and rows(db_url)[0].status == "dropped"
    assert sender(devchain, db_url).send_once("run:2:0", pay(devchain, 1_000_000)).nonce == 1
    assert devchain.chain.token_balance(devchain.token, ACME) == 1_000_000  # the dropped payment never happened


def test_the_doctor_shows_a_stuck_payment_and_release_clears_it(devchain: DevChainNode, db_url: str,
                                                                tmp_path: Path) -> None:
    env = {**os.environ, "AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_STATE_DIR": str(tmp_path / "state"),
           "AIRLOCK_DATABASE_URL": db_url, "AIRLOCK_CHAIN__STUCK_AFTER_S": "0.1",
           **{f"AIRLOCK_CHAIN__{k.upper()}": str(v) for k, v in devchain.chain_settings().items()}}

    def airlock(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=120)

    assert airlock("doctor").stdout.endswith("no transactions recorded on this chain\nno stuck transactions\n")
    devchain.rpc("evm_setAutomine", False)
    with pytest.raises(ChainUnavailableError):
        sender(devchain, db_url, receipt_timeout_s=0.3).send_once("run:1:0", pay(devchain, 5_000_000))
    [stuck] = rows(db_url)
    doctor = airlock("doctor")
    assert doctor.returncode == 1, doctor
    assert f"stuck: nonce 0 {stuck.tx_hash} (token_transfer" not in doctor.stdout  # no action given here
    assert f"stuck: nonce 0 {stuck.tx_hash} (transaction), sent" in doctor.stdout
    assert "pending: in the node's pool, not mined" in doctor.stdout
    assert "clear it: airlock senders release --nonce 0" in doctor.stdout
    as_data = airlock("doctor", "--json")
    assert as_data.returncode == 1  # stuck, as data too
    [report] = json.loads(as_data.stdout)["senders"]
    [stuck_json] = report["stuck"]
    assert (stuck_json["nonce"], stuck_json["tx_hash"], stuck_json["command"]) == (
        0, stuck.tx_hash, "airlock senders release --nonce 0")
    assert stuck_json["state"] == "pending" and report["sender"] == stuck.sender
    unconfirmed = airlock("senders", "release", "--nonce", "0")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr  # no terminal: never without --yes
    assert airlock("senders", "release", "--nonce", "7", "--yes").returncode == 1  # nothing holds it
    devchain.rpc("evm_setAutomine", True)  # mines the pool: the payment, before any release
    released = airlock("senders", "release", "--nonce", "0", "--yes")
    assert released.returncode == 0, released
    assert "nonce 0 is already used on chain" in released.stdout and ": mined" in released.stdout
    assert rows(db_url)[0].status == "mined"
    assert airlock("doctor").stdout.endswith("no stuck transactions\n")
    assert dev_key(1).removeprefix("0x") not in doctor.stdout + released.stdout + released.stderr
    # A worker died with a payment's execution begun, and its lease ran out: the doctor says what waits on it.
    db = Database(db_url)
    db.call(lambda s: (s.add(RunRow(run_id="run-9", workflow="treasury-payout", version=1, requested_by="alice",
                                    tenant="default", status="running")), s.commit()))
    assert db.call(authority.take_lock, key="treasury:0xabc", holder="h", lease=timedelta(minutes=6)).taken
    db.call(repo.start_execution, key="run-9:1:0", run_id="run-9", call_id="c", tool="transfer_token", args={},
            digest="sha256:d", lease=("treasury:0xabc", "h", timedelta(minutes=6)))
    db.call(lambda s: (s.execute(update(ActionLockRow).values(expires_at=utcnow() - timedelta(minutes=2))),
                       s.commit()))
    waiting = airlock("doctor")
    assert waiting.returncode == 0, waiting  # a warning: the retry resumes it once a worker runs
    assert ("waiting: treasury:0xabc is kept for run run-9, whose transfer_token began" in waiting.stdout
            and "its lease ran out 2 min ago" in waiting.stdout), waiting.stdout
    [kept] = json.loads(airlock("doctor", "--json").stdout)["kept_leases"]
    assert (kept["lock_key"], kept["run_id"], kept["tool"]) == ("treasury:0xabc", "run-9", "transfer_token")
    db.call(repo.finish_execution, key="run-9:1:0", ok=True, result={}, error=None, latency_ms=1.0)
    assert "waiting:" not in airlock("doctor").stdout


# --- a broadcast whose answer never came: unknown, never dropped --------------------------------------------------


class AnswerLost:
    """The node, except that the answer to the next broadcast is lost after the node got it (a read timeout)."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain
        self.lose = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self._chain, name)

    def send_raw(self, raw: str) -> None:
        self._chain.send_raw(raw)
        if self.lose:
            self.lose -= 1
            raise ChainUnavailableError("eth_sendRawTransaction at http://127.0.0.1 failed: ReadTimeout: timed out")


def test_a_payment_whose_broadcast_answer_was_lost_is_recorded_sent_when_the_node_says_it_holds_it(
        devchain: DevChainNode, db_url: str) -> None:
    devchain.rpc("evm_setAutomine", False)
    lossy = TxSender(AnswerLost(devchain.chain), Database(db_url), Signer(dev_key(1)), chain_id=31337,  # type: ignore[arg-type]
                     receipt_timeout_s=0.3)
    with pytest.raises(ChainUnavailableError, match="ReadTimeout"):
        lossy.send_once("run:1:0", pay(devchain, 5_000_000))
    [row] = rows(db_url)
    assert (row.status, row.broadcasts) == ("signed", 0) and devchain.chain.known(row.tx_hash)
    with pytest.raises(ChainUnavailableError, match="not mined"):  # the retry: the node holds these very bytes
        sender(devchain, db_url, receipt_timeout_s=0.3).send_once("run:1:0", pay(devchain, 5_000_000))
    assert (rows(db_url)[0].status, rows(db_url)[0].broadcasts) == ("sent", 1)
    devchain.rpc("evm_setAutomine", True)
    devchain.rpc("evm_mine")
    assert sender(devchain, db_url).send_once("run:1:0", pay(devchain, 5_000_000)).tx_hash == row.tx_hash
    assert devchain.chain.token_balance(devchain.token, ACME) == 5_000_000


def test_a_release_whose_answer_was_lost_is_unconfirmed_and_settled_by_the_chain(
        devchain: DevChainNode, db_url: str) -> None:
    devchain.rpc("evm_setAutomine", False)
    with pytest.raises(ChainUnavailableError):
        sender(devchain, db_url, receipt_timeout_s=0.3).send_once("run:1:0", pay(devchain, 5_000_000))
    [stuck] = rows(db_url)
    lossy = TxSender(AnswerLost(devchain.chain), Database(db_url), Signer(dev_key(1)), chain_id=31337)  # type: ignore[arg-type]
    with pytest.raises(ChainUnavailableError, match="^unconfirmed: .* recorded as sent and may still be mined"):
        lossy.release(lossy.release_plan(0), reason="vendor asked to hold it", by="ops@host")
    assert [(r.status, r.action.get("kind")) for r in rows(db_url)] == [("sent", None), ("sent", "noop")]
    devchain.rpc("evm_mine")  # anvil had swapped the no-op in for the payment: the no-op is mined
    with pytest.raises(TransactionDroppedError, match="released by the operator"):
        sender(devchain, db_url).send_once("run:1:0", pay(devchain, 5_000_000))
    assert [(r.status, r.action.get("kind")) for r in rows(db_url)] == [("dropped", None), ("mined", "noop")]
    assert devchain.chain.receipt(stuck.tx_hash) is None
    assert devchain.chain.token_balance(devchain.token, ACME) == 0  # nothing was paid
