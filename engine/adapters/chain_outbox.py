"""One sender's outbox: its recorded transactions, one at a time, and what the node says of each.

What both the sender's normal path (``chain_tx``) and its recovery of what the
node lost (``chain_recovery``) stand on: signing a transaction (or a no-op)
under the sender's chain id, broadcasting the recorded bytes (again) and what
the node's answer to that means (:func:`_answer`), the node's view of a
transaction (``chain_nonces.NodeView``), storing its receipt and updating its
record; plus the per-sender lock that nonces are handed out under, and how
long a signed transaction that was never acknowledged keeps its nonce.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from engine.adapters.chain import Chain, Receipt
from engine.adapters.chain_nonces import NodeView, replacement_fees
from engine.errors import ChainUnavailableError, TransactionDroppedError
from engine.store import chain_txs
from engine.store.chain_txs import ChainTx, SignedTx
from engine.store.db import Database

# A signed transaction whose broadcast was never acknowledged keeps its nonce this
# long; after that, a node that does not know it lets the nonce be used again
# (the old record can then never be mined, so nothing is paid twice).
RESERVE_UNSENT = timedelta(minutes=5)
NOOP_GAS = 21_000
# What a node answers when it already holds these very bytes (the same hash): they were sent (geth, reth: "already
# known"; anvil, OpenEthereum: "already imported"; Nethermind: "AlreadyKnown"; Besu: "Known transaction").
_ALREADY_KNOWN = re.compile(r"\balready[ _]?(known|imported)\b|\bknown[ _]transaction\b")
# What a node answers when another transaction has the nonce (mined, or in its pool at a higher fee).
_NONCE_TAKEN = ("nonce too low", "nonce is too low", "replacement transaction underpriced")
# Not delivered: no connection to the node was ever made.
_NOT_DELIVERED = ("failed to establish a new connection", "connection refused", "name or service not known",
                  "nodename nor servname", "temporary failure in name resolution")
# No answer: the node (or a gateway before it) may have taken the transaction all the same.
_NO_ANSWER = ("timeout", "timed out", "connectionerror", "connection aborted", "connection reset", "remotedisconnected",
              "chunkedencodingerror", "incompleteread", "bad gateway", "gateway time")
# A node that answered, refusing the transaction: the error object of JSON-RPC, or what nodes say.
_REFUSED = ("rpcerror", "'code': -", "underpriced", "insufficient funds", "fee cap", "max fee per gas less than",
            "gas too low", "exceeds block gas limit", "invalid sender", "invalid chain id")
_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _sender_lock(chain_id: int, address: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((chain_id, address), threading.Lock())


class Signs(Protocol):
    """What signs for a sender (``chain_tx.Signer``): an address, and a transaction's raw bytes and hash."""

    @property
    def address(self) -> str: ...

    def sign(self, tx: dict[str, Any]) -> tuple[str, str]: ...


class Outbox:
    """One signer's transactions on one chain: their records, and the node's word on each."""

    def __init__(self, chain: Chain, db: Database, signer: Signs, *, chain_id: int, confirmations: int = 1,
                 receipt_timeout_s: float = 120.0, poll_s: float = 0.2, stuck_after_s: float = 30.0,
                 look_every_s: float = 1.0) -> None:
        self.chain, self.db, self.signer = chain, db, signer
        self.chain_id, self.confirmations = chain_id, confirmations
        self.receipt_timeout_s, self.poll_s = receipt_timeout_s, poll_s
        self.stuck_after_s, self.look_every_s = stuck_after_s, look_every_s

    def _get(self, key: str) -> ChainTx | None:
        return self.db.call(chain_txs.get_transaction, key=key)

    def _update(self, key: str, **values: Any) -> ChainTx:
        return self.db.call(chain_txs.update_transaction, key=key, **values)

    def _sign(self, tx: dict[str, Any]) -> SignedTx:
        full = {**tx, "chainId": self.chain_id, "type": 2}
        raw, tx_hash = self.signer.sign(full)
        return SignedTx(tx_hash=tx_hash, raw_tx=raw, tx={**full, "from": self.signer.address})

    def _sign_noop(self, nonce: int, replacing: list[ChainTx] | tuple[ChainTx, ...] = ()) -> SignedTx:
        """A 0-value transfer to ourselves at ``nonce``: it uses the nonce and does nothing else."""
        fees = replacement_fees(self.chain.fees(), *(t.tx for t in replacing))
        return self._sign({"to": self.signer.address, "data": "0x", "value": 0, "nonce": nonce, "gas": NOOP_GAS,
                           **fees})

    def _view(self, row: ChainTx) -> NodeView:
        """The node's word on ``row`` and its account, the receipt read last (see ``NodeView``)."""
        sender = row.sender
        latest = self.chain.nonce(sender, "latest")
        confirmed = latest
        if self.confirmations > 1:
            confirmed = self.chain.nonce(sender, max(self.chain.block_number() - self.confirmations + 1, 0))
        pending = self.chain.nonce(sender)
        known = self.chain.known(row.tx_hash)
        return NodeView(confirmed_nonce=confirmed, latest_nonce=latest, pending_nonce=pending, known=known,
                        mined=self.chain.receipt(row.tx_hash) is not None)

    def _broadcast(self, row: ChainTx) -> ChainTx:
        """Send the recorded bytes (again); recorded as sent once the node has them, which a node that answers
        it already knows them says too (it holds these very bytes: they count, and keep their nonce). A node
        that says the nonce is used, or that another transaction holds it in its pool, is not an error here:
        looking at the node tells which (mined, or dropped); the record stays as it was."""
        try:
            self.chain.send_raw(row.raw_tx)
        except ChainUnavailableError as exc:
            answer = _answer(exc)
            if answer == "taken":
                return row
            if answer != "known":
                raise
        return self._update(row.idempotency_key, status="sent", broadcasts=row.broadcasts + 1)

    def _store_receipt(self, row: ChainTx, receipt: Receipt) -> ChainTx:
        reason = None
        if receipt.status != 1:
            tx = {k: row.tx[k] for k in ("from", "to", "data", "value")}
            reason = self.chain.revert_reason(row.tx_hash, tx, receipt.block_number)
        return self._update(row.idempotency_key, status="mined" if receipt.status == 1 else "reverted",
                            block_number=receipt.block_number, gas_used=receipt.gas_used, revert_reason=reason,
                            mined_at=datetime.now(UTC))


def _answer(exc: ChainUnavailableError) -> str:
    """What a node's error on broadcasting our recorded bytes means: ``known`` (it holds these very bytes: they
    were sent), ``taken`` (another transaction has their nonce), ``refused`` (it answered no, or was never
    reached), else ``unknown`` (no answer, a timeout or a broken connection: it may hold them)."""
    text = str(exc).lower()
    if _ALREADY_KNOWN.search(text):
        return "known"
    if any(words in text for words in _NONCE_TAKEN):
        return "taken"
    if any(words in text for words in _NOT_DELIVERED):
        return "refused"
    if any(words in text for words in _NO_ANSWER):
        return "unknown"
    return "refused" if any(words in text for words in _REFUSED) else "unknown"


def _dropped_error(row: ChainTx) -> TransactionDroppedError:
    reason = row.revert_reason or f"another transaction took nonce {row.nonce}"
    return TransactionDroppedError(
        f"dropped: transaction {row.tx_hash} (nonce {row.nonce}) was never mined and never will be: {reason}; "
        "nothing was paid for this action (propose it again if it is still wanted)",
        tx_hash=row.tx_hash, nonce=row.nonce, reason=reason)
