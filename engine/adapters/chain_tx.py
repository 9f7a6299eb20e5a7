"""Sending transactions exactly once: sign, record, broadcast, await the receipt.

The order is what makes a retry safe. A transaction is built, signed and
recorded (hash and raw bytes, keyed by the action's idempotency key) in one
database transaction *before* it is broadcast. A retried activity (the worker
died after the send, before the receipt) finds the record and waits for that
same transaction, re-broadcasting its raw bytes if the node lost it; it never
signs a second one. One action has one nonce, so at most one of its
transactions can ever be mined.

Nonces are handed out per sender under a lock (a row lock on the sender in
PostgreSQL, the write lock in SQLite, plus a process lock), so concurrent runs
sharing a treasury account never collide.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eth_account import Account

from engine.adapters.chain import Chain, Receipt
from engine.config import ChainSettings
from engine.errors import ChainUnavailableError, InputError, ToolExecutionError, TransactionRevertedError
from engine.store import chain_txs
from engine.store.chain_txs import ChainTx, SignedTx
from engine.store.db import Database

# A signed transaction whose broadcast was never acknowledged keeps its nonce this
# long; after that, a node that does not know it lets the nonce be used again
# (the old record can then never be mined, so nothing is paid twice).
RESERVE_UNSENT = timedelta(minutes=5)
_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _sender_lock(chain_id: int, address: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((chain_id, address), threading.Lock())


class Signer:
    """Holds a private key and signs with it; shows only its address."""

    def __init__(self, private_key: str) -> None:
        try:
            self._account = Account.from_key(private_key)
        except (ValueError, TypeError):
            raise InputError("the chain signing key is not a valid private key") from None
        self.address: str = self._account.address

    def __repr__(self) -> str:
        return f"Signer({self.address})"

    def sign(self, tx: dict[str, Any]) -> tuple[str, str]:
        """Raw signed bytes and the transaction hash, both 0x-hex."""
        signed = self._account.sign_transaction(tx)
        return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()

    @classmethod
    def from_settings(cls, settings: ChainSettings) -> Signer | None:
        """The configured signer (key or keystore), or None when none is configured.

        Raises:
            InputError: a keystore that is missing, has no password, or does not decrypt.
        """
        if settings.signer_key is not None:
            try:
                return cls(settings.signer_key.get_secret_value())
            except InputError as exc:
                raise InputError(f"AIRLOCK_CHAIN__SIGNER_KEY: {exc}") from None
        if settings.keystore_path is None:
            return None
        path = settings.keystore_path
        if settings.keystore_password is not None:
            password = settings.keystore_password.get_secret_value()
        elif settings.keystore_password_file is not None and settings.keystore_password_file.is_file():
            password = settings.keystore_password_file.read_text().strip()
        else:
            raise InputError(f"keystore {path}: no password (set AIRLOCK_CHAIN__KEYSTORE_PASSWORD "
                             "or AIRLOCK_CHAIN__KEYSTORE_PASSWORD_FILE)")
        try:
            keystore = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"keystore {path}: cannot read it: {exc}") from None
        try:
            key = Account.decrypt(keystore, password)
        except ValueError:
            raise InputError(f"keystore {path}: cannot decrypt it (wrong password?)") from None
        return cls("0x" + bytes(key).hex())


@dataclass(frozen=True)
class SentTx:
    """A transaction that reached its confirmations."""

    tx_hash: str
    nonce: int
    status: str  # mined | reverted
    block_number: int
    gas_used: int
    revert_reason: str | None
    replayed: bool = False


class TxSender:
    """Sends transactions from one signer on one chain, each action at most once."""

    def __init__(self, chain: Chain, db: Database, signer: Signer, *, chain_id: int, confirmations: int = 1,
                 receipt_timeout_s: float = 120.0, poll_s: float = 0.2) -> None:
        self.chain, self.db, self.signer = chain, db, signer
        self.chain_id, self.confirmations = chain_id, confirmations
        self.receipt_timeout_s, self.poll_s = receipt_timeout_s, poll_s

    def send_once(self, key: str, tx: dict[str, Any], *, action: dict[str, Any] | None = None,
                  asset: str | None = None, amount_units: int | None = None) -> SentTx:
        """Send ``tx`` (``to``, ``data``, ``value``) for the action ``key`` unless it was sent already.

        Raises:
            TransactionRevertedError: the transaction would revert (nothing sent) or did (recorded).
            ChainUnavailableError: the node could not be reached or the receipt did not come in
                time; the record stays, and calling again waits for the same transaction.
            ToolExecutionError: the recorded transaction can never be mined (its nonce went to another).
        """
        row = self._get(key)
        if row is None:
            row = self._sign_and_record(key, tx, action or {}, asset, amount_units)
        return self._finish(row)

    # --- signing ----------------------------------------------------------------------

    def _get(self, key: str) -> ChainTx | None:
        return self.db.call(chain_txs.get_transaction, key=key)

    def _sign_and_record(self, key: str, tx: dict[str, Any], action: dict[str, Any], asset: str | None,
                         amount_units: int | None) -> ChainTx:
        sender = self.signer.address
        call = {"from": sender, "to": tx["to"], "data": tx.get("data") or "0x", "value": int(tx.get("value") or 0)}
        gas = self.chain.estimate_gas(call)  # a transaction that would revert is refused here, unsigned
        fees = self.chain.fees()

        def sign(nonce: int) -> SignedTx:
            full = {"to": call["to"], "data": call["data"], "value": call["value"], "nonce": nonce,
                    "gas": gas * 12 // 10, "chainId": self.chain_id, "type": 2, **fees}
            raw, tx_hash = self.signer.sign(full)
            return SignedTx(tx_hash=tx_hash, raw_tx=raw, tx={**full, "from": sender})

        with _sender_lock(self.chain_id, sender):  # a concurrent attempt that recorded first wins
            return self.db.call(chain_txs.record_signed, key=key, chain_id=self.chain_id, sender=sender,
                                on_chain_nonce=lambda: self.chain.nonce(sender), reserve_unsent=RESERVE_UNSENT,
                                sign=sign, action=action, asset=asset, amount_units=amount_units)

    # --- sending and waiting -------------------------------------------------------------

    def _finish(self, row: ChainTx) -> SentTx:
        if row.status in ("mined", "reverted"):
            return self._result(row, replayed=True)
        if row.status == "dropped":
            raise ToolExecutionError(f"transaction {row.tx_hash} was never mined: nonce {row.nonce} went to "
                                     "another transaction; nothing was paid for this action")
        receipt = self.chain.receipt(row.tx_hash)
        if receipt is None:
            self._broadcast(row)
            receipt = self._wait(row)
        else:
            receipt = self._wait(row, receipt)
        return self._record(row, receipt)

    def _broadcast(self, row: ChainTx) -> None:
        try:
            self.chain.send_raw(row.raw_tx)
        except ChainUnavailableError as exc:
            text = str(exc).lower()
            if "nonce too low" not in text and "nonce is too low" not in text:
                raise
            if self.chain.receipt(row.tx_hash) is None:  # the nonce went to something else: never mined
                self._update(row.idempotency_key, status="dropped")
                raise ToolExecutionError(f"transaction {row.tx_hash} was never sent: nonce {row.nonce} was used "
                                         "by another transaction; nothing was paid for this action") from exc
            return
        self._update(row.idempotency_key, status="sent", broadcasts=row.broadcasts + 1)

    def _wait(self, row: ChainTx, receipt: Receipt | None = None) -> Receipt:
        deadline = time.monotonic() + self.receipt_timeout_s
        while True:
            receipt = receipt or self.chain.receipt(row.tx_hash)
            if receipt is not None and self.chain.block_number() - receipt.block_number + 1 >= self.confirmations:
                return receipt
            if time.monotonic() > deadline:
                state = "not mined" if receipt is None else f"mined in block {receipt.block_number}, not confirmed"
                raise ChainUnavailableError(f"transaction {row.tx_hash} {state} after {self.receipt_timeout_s:g}s; "
                                            "it stays recorded and a retry waits for the same transaction")
            time.sleep(self.poll_s)

    def _record(self, row: ChainTx, receipt: Receipt) -> SentTx:
        reason = None
        if receipt.status != 1:
            tx = {k: row.tx[k] for k in ("from", "to", "data", "value")}
            reason = self.chain.revert_reason(row.tx_hash, tx, receipt.block_number)
        fresh = self._update(row.idempotency_key, status="mined" if receipt.status == 1 else "reverted",
                             block_number=receipt.block_number, gas_used=receipt.gas_used, revert_reason=reason,
                             mined_at=datetime.now(UTC))
        return self._result(fresh, replayed=False)

    def _update(self, key: str, **values: Any) -> ChainTx:
        return self.db.call(chain_txs.update_transaction, key=key, **values)

    @staticmethod
    def _result(row: ChainTx, *, replayed: bool) -> SentTx:
        if row.status == "reverted":
            reason = row.revert_reason or "reverted without a reason"
            raise TransactionRevertedError(f"transaction {row.tx_hash} reverted in block {row.block_number}: "
                                           f"{reason}", reason=reason, tx_hash=row.tx_hash)
        return SentTx(tx_hash=row.tx_hash, nonce=row.nonce, status=row.status, block_number=row.block_number or 0,
                      gas_used=row.gas_used or 0, revert_reason=row.revert_reason, replayed=replayed)

    def sent_since(self, asset: str | None, since: datetime) -> int:
        """Smallest units of ``asset`` this sender sent (or has on its way) since ``since``."""
        return self.db.call(chain_txs.units_sent_since, chain_id=self.chain_id, sender=self.signer.address,
                            asset=asset, since=since)


class ChainAccess:
    """What chain tools get from the worker: reads, the sender address, and sending once.

    The signing key stays inside; tools never see it.
    """

    def __init__(self, settings: ChainSettings, db: Database, signer: Signer | None) -> None:
        self.settings = settings
        self.chain = Chain(settings.rpc_url, timeout_s=settings.rpc_timeout_s)
        self.chain_id = settings.chain_id
        self._signer = signer
        self._sender = None if signer is None else TxSender(
            self.chain, db, signer, chain_id=settings.chain_id, confirmations=settings.confirmations,
            receipt_timeout_s=settings.receipt_timeout_s)

    @classmethod
    def from_settings(cls, settings: ChainSettings, db: Database) -> ChainAccess:
        """Built once per worker; a bad keystore fails here, at start."""
        return cls(settings, db, Signer.from_settings(settings))

    def __repr__(self) -> str:
        return f"ChainAccess({self.chain.shown_url}, chain {self.chain_id}, sender {self.address})"

    @property
    def address(self) -> str | None:
        """The signing account, if one is configured."""
        return self._signer.address if self._signer else None

    def sender(self) -> TxSender:
        """The transaction sender. Raises ToolExecutionError when no key is configured (fail closed)."""
        if self._sender is None:
            raise ToolExecutionError("no signing key is configured for the chain (AIRLOCK_CHAIN__SIGNER_KEY or "
                                     "AIRLOCK_CHAIN__KEYSTORE_PATH); nothing can be sent")
        return self._sender

    def sent_today(self, asset: str | None) -> int:
        """What the sender sent of ``asset`` since midnight UTC (smallest units)."""
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return self.sender().sent_since(asset, midnight)
