"""The sender recovers what a node loses, decided on a fake node: where a transaction stands, what fills a gap,
what is dropped, what an operator's release does. Never the same action under two nonces, never paid twice."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak
from hexbytes import HexBytes
from sqlmodel import Session, select

from engine.adapters.chain import Receipt
from engine.adapters.chain_doctor import inspect_senders, nonces_text
from engine.adapters.chain_nonces import NodeView, TxState, assess, holes, next_nonce, replacement_fees
from engine.adapters.chain_outbox import RESERVE_UNSENT, _answer
from engine.adapters.chain_tx import Signer, TxSender
from engine.errors import ChainUnavailableError, TransactionDroppedError
from engine.store.db import Database
from engine.store.tables import ChainTransactionRow, utcnow

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil's published test account 1
ME = Signer(KEY).address
PAYEE = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
FEES = {"maxFeePerGas": 2_000_000_000, "maxPriorityFeePerGas": 1_000_000_000}


# --- the decisions ------------------------------------------------------------------------------------


def view(confirmed: int = 0, latest: int | None = None, pending: int | None = None, known: bool = True,
         mined: bool = False) -> NodeView:
    latest = confirmed if latest is None else latest
    return NodeView(confirmed_nonce=confirmed, latest_nonce=latest,
                    pending_nonce=latest if pending is None else pending, known=known, mined=mined)


@pytest.mark.parametrize("nonce, seen, state", [
    (3, view(3, mined=True), TxState.MINED),
    (3, view(5, known=False, mined=True), TxState.MINED),  # a receipt wins over everything
    (3, view(4, known=False), TxState.CONSUMED),  # its nonce is used in a confirmed block, not by it
    (3, view(3, latest=4, known=False), TxState.REPLACED),  # used, not yet confirmed: wait
    (3, view(3, pending=4, known=False), TxState.REPLACED),  # another holds it in the pool
    (3, view(3, known=False), TxState.LOST),  # the node forgot it; its nonce is next: send the same bytes
    (3, view(1, known=False), TxState.LOST),  # ... and there is a gap below it
    (3, view(1, pending=2), TxState.GAPPED),  # queued behind nonce 2, which nothing holds
    (3, view(3, pending=4), TxState.PENDING),  # next in line
    (3, view(1, pending=5), TxState.PENDING),
])
def test_assess(nonce: int, seen: NodeView, state: TxState) -> None:
    assert assess(nonce, seen) is state


def test_holes_are_the_nonces_below_nothing_holds_and_only_when_it_waits_on_them() -> None:
    assert list(holes(3, view(1, pending=2))) == [2]
    assert list(holes(3, view(0, known=False))) == [0, 1, 2]
    assert list(holes(3, view(3, known=False))) == []
    assert list(holes(3, view(1, pending=4))) == []  # pending: nothing to fill
    assert list(holes(3, view(4, known=False))) == []  # consumed


def test_next_nonce_fills_a_gap_instead_of_queueing_behind_it() -> None:
    assert next_nonce(0, []) == 0
    assert next_nonce(2, [2, 3, 5]) == 4
    assert next_nonce(0, [1]) == 0  # nonce 1 waits on 0: the next send takes 0 and unblocks it
    assert next_nonce(4, [1, 2]) == 4  # already below the pool: not ours to hold


def test_replacement_fees_outbid_what_they_replace_and_never_go_below_the_current_ones() -> None:
    assert replacement_fees(FEES) == FEES
    old = {"maxFeePerGas": 10_000_000_000, "maxPriorityFeePerGas": 2_000_000_000}
    assert replacement_fees(FEES, old) == {"maxFeePerGas": 12_000_000_001, "maxPriorityFeePerGas": 2_400_000_001}
    assert replacement_fees(FEES, {"maxFeePerGas": "0x3b9aca00"})["maxFeePerGas"] == FEES["maxFeePerGas"]


# --- the sender, on a fake node -------------------------------------------------------------------------


class FakeNode:
    """A node with one pool: mines in nonce order, queues what has a gap below it, forgets on ``reset``.

    ``says_already_known``: a transaction it holds, sent again, is answered "already known" (geth) rather than
    accepted quietly. ``lose_answers``: that many broadcasts time out, after (``delivered``) or before the node
    got them."""

    def __init__(self) -> None:
        self.automine = True
        self.says_already_known = False
        self.lose_answers, self.delivered = 0, True
        self.reset()

    def reset(self) -> None:
        self.pool: dict[str, dict[str, Any]] = {}
        self.blocks: list[list[str]] = [[]]
        self.mined: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, int] = {}

    @staticmethod
    def decode(raw: str) -> dict[str, Any]:
        tx = TypedTransaction.from_bytes(HexBytes(raw))
        fields = tx.as_dict()
        return {"hash": "0x" + keccak(HexBytes(raw)).hex(), "nonce": int(fields["nonce"]), "to": fields["to"],
                "fee": int(fields["maxFeePerGas"]), "raw": raw}

    def foreign(self, nonce: int, fee: int) -> str:
        """A transaction from the same account that Airlock did not send (another wallet with the key)."""
        raw, _ = Signer(KEY).sign({"to": PAYEE, "value": 1, "data": "0x", "nonce": nonce, "gas": 21_000,
                                   "chainId": 31337, "type": 2, "maxFeePerGas": fee, "maxPriorityFeePerGas": fee})
        self.send_raw(raw)
        return self.decode(raw)["hash"]

    # what the sender calls
    def nonce(self, address: str, block: str | int = "pending") -> int:
        latest = sum(1 for tx in self.mined.values())
        if block == "pending":
            while any(tx["nonce"] == latest for tx in self.pool.values()):
                latest += 1
        return latest

    def send_raw(self, raw: str) -> None:
        if self.lose_answers:
            self.lose_answers -= 1
            if self.delivered:
                self.send_raw(raw)
            raise ChainUnavailableError("eth_sendRawTransaction at http://node.example/v3/REDACTED failed: "
                                        "ReadTimeout: HTTPConnectionPool(host='node.example', port=443): Read timed "
                                        "out. (read timeout=10)")
        tx = self.decode(raw)
        if tx["hash"] in self.pool or tx["hash"] in self.mined:
            if self.says_already_known:
                raise ChainUnavailableError("eth_sendRawTransaction failed: Web3RPCError: {'code': -32000, "
                                            "'message': 'already known'}")
            return
        if tx["nonce"] < self.nonce(ME, "latest"):
            raise ChainUnavailableError("eth_sendRawTransaction failed: nonce too low")
        rival = next((t for t in self.pool.values() if t["nonce"] == tx["nonce"]), None)
        if rival is not None:
            if tx["fee"] * 10 < rival["fee"] * 11:
                raise ChainUnavailableError("eth_sendRawTransaction failed: replacement transaction underpriced")
            del self.pool[rival["hash"]]
        self.pool[tx["hash"]] = tx
        self.sent[tx["hash"]] = self.sent.get(tx["hash"], 0) + 1
        if self.automine:
            self.mine()

    def mine(self) -> None:
        block: list[str] = []
        while (tx := next((t for t in self.pool.values() if t["nonce"] == self.nonce(ME, "latest")), None)):
            del self.pool[tx["hash"]]
            self.mined[tx["hash"]] = {**tx, "block": len(self.blocks)}
            block.append(tx["hash"])
        self.blocks.append(block)

    def known(self, tx_hash: str) -> bool:
        return tx_hash in self.pool or tx_hash in self.mined

    def receipt(self, tx_hash: str) -> Receipt | None:
        tx = self.mined.get(tx_hash)
        return None if tx is None else Receipt(tx_hash=tx_hash, status=1, block_number=tx["block"], gas_used=21_000)

    def block_number(self) -> int:
        return len(self.blocks) - 1

    def fees(self) -> dict[str, int]:
        return dict(FEES)

    def estimate_gas(self, tx: dict[str, Any]) -> int:
        return 50_000


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    Database(f"sqlite:///{path}").migrate()
    return path


@pytest.fixture
def db(migrated: Path, tmp_path: Path) -> Iterator[Database]:
    shutil.copy(migrated, tmp_path / "airlock.db")
    yield Database(f"sqlite:///{tmp_path / 'airlock.db'}")


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


SHORT = 0.3  # seconds: the wait for a receipt in tests that expect it to run out


def sender(node: FakeNode, db: Database, **options: float) -> TxSender:
    # Generous by default (a loaded machine is slow to mine even a fake block); tests that expect the wait to
    # run out pass SHORT.
    timing: dict[str, float] = {"receipt_timeout_s": 10.0, "poll_s": 0.01, "stuck_after_s": 0.0, "look_every_s": 0.0}
    return TxSender(node, db, Signer(KEY), chain_id=31337, **{**timing, **options})  # type: ignore[arg-type]


def pay(units: int) -> dict[str, Any]:
    return {"to": PAYEE, "value": units}


def rows(db: Database) -> list[ChainTransactionRow]:
    with Session(db.engine) as session:
        return list(session.exec(select(ChainTransactionRow).order_by(ChainTransactionRow.created_at)).all())


def in_flight(node: FakeNode, db: Database, key: str, units: int) -> ChainTransactionRow:
    """Send with nothing mining: the attempt gives up waiting, the transaction stays recorded as sent."""
    node.automine = False
    with pytest.raises(ChainUnavailableError, match="not mined"):
        sender(node, db, receipt_timeout_s=SHORT).send_once(key, pay(units))
    row = next(r for r in rows(db) if r.idempotency_key == key)
    assert row.status == "sent"
    return row


def paid_once(node: FakeNode) -> None:
    """No transaction reached the chain twice and no nonce holds two."""
    nonces = [tx["nonce"] for tx in node.mined.values()]
    assert len(nonces) == len(set(nonces)) == len(node.mined)


def test_a_transaction_the_node_lost_is_sent_again_as_the_same_bytes(node: FakeNode, db: Database) -> None:
    lost = in_flight(node, db, "run:1:0", 5)
    node.pool.clear()  # dropped from the pool
    node.automine = True
    sent = sender(node, db).send_once("run:1:0", pay(5))
    assert (sent.tx_hash, sent.nonce, sent.status) == (lost.tx_hash, 0, "mined")
    assert sent.note == "the node had lost it: the same signed transaction was broadcast again"
    assert [(r.status, r.broadcasts) for r in rows(db)] == [("mined", 2)]
    paid_once(node)


def test_a_reset_node_gets_its_lost_nonce_filled_and_the_payment_behind_it_goes_through(
        node: FakeNode, db: Database) -> None:
    first = sender(node, db).send_once("run:1:0", pay(1))
    waiting = in_flight(node, db, "run:2:0", 2)
    assert waiting.nonce == 1
    node.reset()  # the chain forgot both: nonce 0 (mined) and nonce 1 (in the pool)
    node.automine = True
    sent = sender(node, db, stuck_after_s=0.05).send_once("run:2:0", pay(2))
    assert (sent.tx_hash, sent.nonce) == (waiting.tx_hash, 1)  # the same transaction, never signed again
    assert "nonce 0 below it, which the node had lost, filled with no-ops" in (sent.note or "")
    after = sender(node, db).send_once("run:3:0", pay(3))
    assert after.nonce == 2
    recorded = [(r.nonce, r.status, r.action.get("kind")) for r in rows(db)]
    assert recorded == [(0, "mined", None), (1, "mined", None), (0, "mined", "noop"), (2, "mined", None)]
    noop = node.mined[rows(db)[2].tx_hash]
    assert noop["to"] == HexBytes(ME)  # a transfer to itself
    assert first.tx_hash not in node.mined  # the payment the reset chain lost is not replayed
    paid_once(node)


def test_the_next_payment_takes_the_gap_instead_of_queueing_behind_it(node: FakeNode, db: Database) -> None:
    sender(node, db).send_once("run:1:0", pay(1))
    waiting = in_flight(node, db, "run:2:0", 2)
    node.reset()
    node.automine = True
    node.send_raw(waiting.raw_tx)  # the node holds it again, queued behind nonce 0
    after = sender(node, db).send_once("run:3:0", pay(3))
    assert after.nonce == 0  # not 2: nothing queues behind the gap
    assert node.receipt(waiting.tx_hash) is not None  # the gap closed, the waiting one was mined
    assert sender(node, db).send_once("run:2:0", pay(2)).tx_hash == waiting.tx_hash
    assert not any(r.action.get("kind") == "noop" for r in rows(db))
    paid_once(node)


def test_a_gap_another_action_of_ours_holds_is_filled_by_its_own_bytes_not_a_noop(
        node: FakeNode, db: Database) -> None:
    low = in_flight(node, db, "run:1:0", 1)
    high = in_flight(node, db, "run:2:0", 2)
    node.reset()  # both forgotten
    node.automine = True
    node.send_raw(high.raw_tx)  # one comes back, queued behind the other
    assert sender(node, db).send_once("run:2:0", pay(2)).tx_hash == high.tx_hash
    assert node.receipt(low.tx_hash) is not None  # sent again as itself (its action's own payment)
    assert sender(node, db).send_once("run:1:0", pay(1)).tx_hash == low.tx_hash
    assert not any(r.action.get("kind") == "noop" for r in rows(db))
    paid_once(node)


def test_a_transaction_whose_nonce_another_took_is_dropped_with_the_reason(node: FakeNode, db: Database) -> None:
    stuck = in_flight(node, db, "run:1:0", 7)
    node.foreign(0, FEES["maxFeePerGas"] * 2)  # another wallet with the same key outbids it
    node.mine()
    with pytest.raises(TransactionDroppedError, match="nothing was paid for this action") as exc:
        sender(node, db).send_once("run:1:0", pay(7))
    assert (exc.value.tx_hash, exc.value.nonce) == (stuck.tx_hash, 0)
    assert "a transaction Airlock did not send" in exc.value.reason
    [row] = rows(db)
    assert (row.status, row.revert_reason) == ("dropped", exc.value.reason)
    with pytest.raises(TransactionDroppedError):  # asked again: the record answers, nothing is signed
        sender(node, db).send_once("run:1:0", pay(7))
    assert len(rows(db)) == 1
    node.automine = True
    assert sender(node, db).send_once("run:2:0", pay(8)).nonce == 1  # the account is not jammed
    assert stuck.tx_hash not in node.mined


def test_while_another_holds_its_nonce_unconfirmed_it_waits(node: FakeNode, db: Database) -> None:
    in_flight(node, db, "run:1:0", 7)
    node.foreign(0, FEES["maxFeePerGas"] * 2)  # in the pool, not mined
    with pytest.raises(ChainUnavailableError, match="not mined"):
        sender(node, db, receipt_timeout_s=SHORT).send_once("run:1:0", pay(7))
    assert rows(db)[0].status == "sent"  # not dropped: the other might still lose


def test_the_operator_releases_a_stuck_payment_with_a_noop(node: FakeNode, db: Database) -> None:
    stuck = in_flight(node, db, "run:1:0", 9)
    plan = sender(node, db).release_plan(0)
    assert (plan.used, [t.tx_hash for t in plan.replaces], plan.gap, plan.pointless) == (
        False, [stuck.tx_hash], [], False)
    node.automine = True  # the release outbids it in the pool; the next block takes the no-op
    message = sender(node, db).release(plan, reason="vendor asked to hold it", by="ops@host")
    assert message.startswith("nonce 0 is released: no-op ")
    assert stuck.tx_hash not in node.mined
    dropped, noop = rows(db)
    assert noop.action == {"kind": "noop", "nonce": 0, "released_by": "ops@host",
                           "reason": "vendor asked to hold it", "replaces": [stuck.tx_hash]}
    assert (noop.status, dropped.status) == ("mined", "dropped")
    assert dropped.revert_reason is not None and "released by the operator (ops@host" in dropped.revert_reason
    with pytest.raises(TransactionDroppedError, match="vendor asked to hold it"):
        sender(node, db).send_once("run:1:0", pay(9))
    assert sender(node, db).send_once("run:2:0", pay(1)).nonce == 1


def test_releasing_behind_a_gap_fills_it_and_a_used_or_idle_nonce_sends_nothing(
        node: FakeNode, db: Database) -> None:
    sender(node, db).send_once("run:1:0", pay(1))
    waiting = in_flight(node, db, "run:2:0", 2)
    node.reset()
    node.automine = True
    plan = sender(node, db).release_plan(1)
    assert (plan.gap, [t.tx_hash for t in plan.replaces]) == ([0], [waiting.tx_hash])
    assert sender(node, db).release(plan, reason="", by="ops@host").startswith("nonce 1 is released")
    assert node.nonce(ME, "latest") == 2 and waiting.tx_hash not in node.mined
    assert sender(node, db).release_plan(5).pointless  # nothing holds it, nothing waits behind it
    used = sender(node, db).release_plan(0)
    assert used.used and sender(node, db).release(used, reason="", by="ops").startswith("nonce 0 of ")
    assert node.nonce(ME, "latest") == 2


def test_the_doctor_lists_stuck_transactions_with_the_command_that_clears_them(node: FakeNode, db: Database) -> None:
    mined = sender(node, db).send_once("run:1:0", pay(1))
    waiting = in_flight(node, db, "run:2:0", 2)
    [healthy] = inspect_senders(node, db, chain_id=31337, confirmations=1, stuck_after_s=3600)  # type: ignore[arg-type]
    assert healthy.stuck == healthy.lost_mined == [] and healthy.open_count == 1
    node.reset()
    node.send_raw(waiting.raw_tx)
    [report] = inspect_senders(node, db, chain_id=31337, confirmations=1, stuck_after_s=0)  # type: ignore[arg-type]
    assert (report.sender, report.latest_nonce, report.pending_nonce) == (ME, 0, 0)
    [stuck] = report.stuck
    assert (stuck.tx.tx_hash, stuck.state, stuck.gap) == (waiting.tx_hash, TxState.GAPPED, [0])
    assert stuck.command == "airlock senders release --nonce 1"
    assert [t.tx_hash for t in report.lost_mined] == [mined.tx_hash]  # recorded mined; the node forgot it


def test_a_long_gap_is_left_to_the_operator_and_shown_short(node: FakeNode, db: Database) -> None:
    for i in range(18):
        sender(node, db).send_once(f"run:{i}:0", pay(1))
    waiting = in_flight(node, db, "run:99:0", 2)
    node.reset()
    node.automine = True
    node.send_raw(waiting.raw_tx)
    with pytest.raises(ChainUnavailableError, match=r"waits behind nonces 0\.\.17 that nothing holds .* more than 16 "
                                                    r"to fill with no-ops unasked; .*release --nonce 18"):
        sender(node, db, receipt_timeout_s=SHORT).send_once("run:99:0", pay(2))
    assert not any(r.action.get("kind") == "noop" for r in rows(db))
    assert nonces_text(list(range(18))) == "0..17 (18 nonces)" and nonces_text([0, 2]) == "0, 2"


# --- what the node's answer means for the record -------------------------------------------------------------


@pytest.mark.parametrize("error, meaning", [
    ("Web3RPCError: {'code': -32000, 'message': 'already known'}", "known"),  # geth: it holds these bytes
    ("Web3RPCError: {'code': -32003, 'message': 'transaction already imported'}", "known"),  # anvil
    ("Web3RPCError: {'code': -32010, 'message': 'AlreadyKnown'}", "known"),  # Nethermind
    ("Known transaction: 0x5b3c", "known"),
    ("Web3RPCError: {'code': -32000, 'message': 'nonce too low'}", "taken"),
    ("Web3RPCError: {'code': -32003, 'message': 'replacement transaction underpriced'}", "taken"),
    ("Web3RPCError: {'code': -32000, 'message': 'insufficient funds for gas * price + value'}", "refused"),
    ("Web3RPCError: {'code': -32602, 'message': 'unknown transaction type'}", "refused"),
    ("ConnectionError: ... Failed to establish a new connection: [Errno 111] Connection refused", "refused"),
    ("ReadTimeout: HTTPConnectionPool(host='node.example', port=443): Read timed out.", "unknown"),
    ("ConnectionError: ('Connection aborted.', RemoteDisconnected('closed without response'))", "unknown"),
    ("HTTPError: 504 Server Error: Gateway Timeout", "unknown"),
    ("Web3RPCError: {'code': -32000, 'message': 'request timed out'}", "unknown"),
    ("something no node says", "unknown"),
])
def test_what_the_nodes_answer_to_a_broadcast_means(error: str, meaning: str) -> None:
    assert _answer(ChainUnavailableError(f"eth_sendRawTransaction at http://node.example failed: {error}")) == meaning


def age(db: Database, by: timedelta) -> None:
    """Every record signed ``by`` earlier (past RESERVE_UNSENT, a record that was never sent gives its nonce up)."""
    with Session(db.engine) as session:
        for row in session.exec(select(ChainTransactionRow)).all():
            row.created_at = utcnow() - by
            session.add(row)
        session.commit()


def answer_lost(node: FakeNode, db: Database, key: str, units: int) -> ChainTransactionRow:
    """Send with nothing mining; the node takes the transaction, but its answer is lost (a timeout)."""
    node.automine, node.lose_answers = False, 1
    with pytest.raises(ChainUnavailableError, match="ReadTimeout"):
        sender(node, db).send_once(key, pay(units))
    row = next(r for r in rows(db) if r.idempotency_key == key)
    assert (row.status, row.broadcasts) == ("signed", 0) and node.known(row.tx_hash)
    return row


def test_already_known_for_our_own_bytes_means_sent_and_its_nonce_stays_reserved(
        node: FakeNode, db: Database) -> None:
    node.says_already_known = True
    lost = in_flight(node, db, "run:1:0", 1)  # nonce 0, sent
    queued = answer_lost(node, db, "run:2:0", 2)  # nonce 1: in the node's pool, recorded as signed
    with pytest.raises(ChainUnavailableError, match="not mined"):  # its retry sends it again: "already known"
        sender(node, db, look_every_s=60, receipt_timeout_s=SHORT).send_once("run:2:0", pay(2))
    [again] = [r for r in rows(db) if r.idempotency_key == "run:2:0"]
    assert (again.status, again.broadcasts) == ("sent", 1)  # the node holds these very bytes: they were sent
    del node.pool[lost.tx_hash]  # the node loses nonce 0: nonce 1 waits queued behind it
    age(db, RESERVE_UNSENT + timedelta(minutes=1))
    later = in_flight(node, db, "run:3:0", 3)
    assert later.nonce == 2  # not 1: that nonce is still taken by the queued transaction
    node.automine = True
    node.mine()
    for key, units in (("run:1:0", 1), ("run:2:0", 2), ("run:3:0", 3)):  # every action is paid, once
        assert sender(node, db).send_once(key, pay(units)).status == "mined"
    assert node.receipt(queued.tx_hash) is not None
    assert [r.status for r in rows(db)] == ["mined"] * 3  # nothing dropped, no no-op needed
    paid_once(node)


def test_a_nonce_taken_answer_leaves_the_record_as_it_was(node: FakeNode, db: Database) -> None:
    node.says_already_known = True
    node.automine, node.lose_answers, node.delivered = False, 1, False  # never reached the node
    with pytest.raises(ChainUnavailableError, match="ReadTimeout"):
        sender(node, db).send_once("run:1:0", pay(7))
    node.foreign(0, FEES["maxFeePerGas"] * 2)  # another holds its nonce: the node answers "underpriced"
    unsent = sender(node, db)._get("run:1:0")
    assert unsent is not None and sender(node, db)._broadcast(unsent) == unsent
    [row] = rows(db)
    assert (row.status, row.broadcasts) == ("signed", 0)  # the node does not hold it: not sent


def test_a_broadcast_whose_answer_was_lost_keeps_its_nonce_while_the_node_holds_it(
        node: FakeNode, db: Database) -> None:
    lost = in_flight(node, db, "run:1:0", 1)  # nonce 0, sent
    queued = answer_lost(node, db, "run:2:0", 2)  # nonce 1: the node has it, the record says signed
    del node.pool[lost.tx_hash]  # nonce 1 waits queued behind nonce 0
    age(db, RESERVE_UNSENT + timedelta(minutes=1))
    assert in_flight(node, db, "run:3:0", 3).nonce == 2  # the node holds nonce 1: not given to another action
    node.automine = True
    node.mine()
    for key, units in (("run:1:0", 1), ("run:2:0", 2), ("run:3:0", 3)):
        assert sender(node, db).send_once(key, pay(units)).status == "mined"
    assert node.receipt(queued.tx_hash) is not None
    assert [r.status for r in rows(db)] == ["mined"] * 3  # its own bytes filled the gap, not a no-op
    paid_once(node)


def test_a_release_whose_answer_was_lost_is_unconfirmed_not_dropped(node: FakeNode, db: Database) -> None:
    stuck = in_flight(node, db, "run:1:0", 9)
    plan = sender(node, db).release_plan(0)
    node.lose_answers = 1  # the node takes the no-op (it outbids the payment in the pool); the answer is lost
    with pytest.raises(ChainUnavailableError, match=r"^unconfirmed: the node did not answer whether it took the "
                                                    r"no-op .* for nonce 0 .* recorded as sent and may still be mined"):
        sender(node, db).release(plan, reason="vendor asked to hold it", by="ops@host")
    payment, noop = rows(db)
    assert (payment.status, noop.status, noop.broadcasts) == ("sent", "sent", 1)  # nothing claimed dropped
    assert noop.revert_reason is None
    node.mine()  # the no-op it did take is mined
    with pytest.raises(TransactionDroppedError, match="released by the operator"):  # the retry finds it, with proof
        sender(node, db).send_once("run:1:0", pay(9))
    payment, noop = rows(db)
    assert (payment.status, noop.status) == ("dropped", "mined") and stuck.tx_hash not in node.mined
    paid_once(node)


def test_a_release_the_node_never_got_is_settled_by_the_block_that_uses_its_nonce(
        node: FakeNode, db: Database) -> None:
    stuck = in_flight(node, db, "run:1:0", 9)
    plan = sender(node, db).release_plan(0)
    node.lose_answers, node.delivered = 1, False  # a timeout: the node never got the no-op
    with pytest.raises(ChainUnavailableError, match="^unconfirmed: "):
        sender(node, db).release(plan, reason="", by="ops@host")
    assert [r.status for r in rows(db)] == ["sent", "sent"]  # unknown: neither is dropped
    node.automine = True
    node.mine()  # the payment, still in the pool, is mined
    assert sender(node, db).send_once("run:1:0", pay(9)).tx_hash == stuck.tx_hash
    payment, noop = rows(db)
    assert (payment.status, noop.status) == ("mined", "dropped")  # now a confirmed block used its nonce
    assert noop.revert_reason == f"transaction {stuck.tx_hash} of another action took nonce 0"
    paid_once(node)


def test_a_release_the_node_refused_sends_nothing_and_claims_nothing(node: FakeNode, db: Database) -> None:
    in_flight(node, db, "run:1:0", 9)
    plan = sender(node, db).release_plan(0)
    node.mine()  # the payment is mined before the release is sent: the node answers "nonce too low"
    with pytest.raises(ChainUnavailableError, match="the node did not take the no-op .* for nonce 0, so nothing "
                                                    "was released: .*nonce too low"):
        sender(node, db).release(plan, reason="", by="ops@host")
    payment, noop = rows(db)
    assert (payment.status, noop.status, noop.broadcasts) == ("sent", "signed", 0)
    used = sender(node, db).release_plan(0)  # asked again, the records are brought up to date
    assert used.used and sender(node, db).release(used, reason="", by="ops@host").startswith("nonce 0 of ")
    payment, noop = rows(db)
    assert (payment.status, noop.status) == ("mined", "dropped")
