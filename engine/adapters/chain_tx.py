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
sharing a treasury account never collide: the lowest nonce from the node's
pending one that no transaction of ours on its way holds, so a gap the node
left (it was reset, or lost transactions) is filled rather than queued behind.

This module is the normal path: :class:`Signer` (the key) and
:class:`TxSender`'s :meth:`~TxSender.send_once`. What the node lost (gaps,
no-ops, re-broadcasts, dropped actions) and the operator's release are
``chain_recovery``; records and broadcasts, ``chain_outbox``; what tools get,
``chain_access``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from eth_account import Account

from engine.adapters.chain import Receipt
from engine.adapters.chain_outbox import RESERVE_UNSENT, _dropped_error, _sender_lock
from engine.adapters.chain_recovery import Recovery
from engine.config import ChainSettings
from engine.errors import ChainUnavailableError, InputError, TransactionRevertedError
from engine.store import chain_txs
from engine.store.chain_txs import ChainTx, SignedTx


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
    note: str | None = None  # how it was recovered, when the node had lost it


class TxSender(Recovery):
    """Sends transactions from one signer on one chain, each action at most once.

    While it waits for a receipt it looks at the node every ``look_every_s``
    (:mod:`engine.adapters.chain_nonces` decides): a transaction the node lost
    is broadcast again (the same bytes); one queued behind nonces nobody sent
    for ``stuck_after_s`` gets them filled (by our own transactions on their
    way, broadcast again, or by no-ops); one whose nonce another transaction
    took in a confirmed block is dropped and its action fails, saying so
    (that, and the operator's release, it has from :class:`Recovery`; its
    records, broadcasts and constructor from ``chain_outbox.Outbox``).
    """

    def send_once(self, key: str, tx: dict[str, Any], *, action: dict[str, Any] | None = None,
                  asset: str | None = None, amount_units: int | None = None) -> SentTx:
        """Send ``tx`` (``to``, ``data``, ``value``) for the action ``key`` unless it was sent already.

        Raises:
            TransactionRevertedError: the transaction would revert (nothing sent) or did (recorded).
            TransactionDroppedError: the recorded transaction can never be mined: another took its nonce.
            ChainUnavailableError: the node could not be reached or the receipt did not come in
                time; the record stays, and calling again waits for the same transaction.
        """
        row = self._get(key)
        if row is None:
            row = self._sign_and_record(key, tx, action or {}, asset, amount_units)
            if row.status == "signed" and row.broadcasts == 0:
                row = self._broadcast(row)
        return self._finish(row)

    # --- signing ----------------------------------------------------------------------

    def _sign_and_record(self, key: str, tx: dict[str, Any], action: dict[str, Any], asset: str | None,
                         amount_units: int | None) -> ChainTx:
        sender = self.signer.address
        call = {"from": sender, "to": tx["to"], "data": tx.get("data") or "0x", "value": int(tx.get("value") or 0)}
        gas = self.chain.estimate_gas(call)  # a transaction that would revert is refused here, unsigned
        fees = self.chain.fees()

        def sign(nonce: int) -> SignedTx:
            return self._sign({"to": call["to"], "data": call["data"], "value": call["value"], "nonce": nonce,
                               "gas": gas * 12 // 10, **fees})

        with _sender_lock(self.chain_id, sender):  # a concurrent attempt that recorded first wins
            return self.db.call(chain_txs.record_signed, key=key, chain_id=self.chain_id, sender=sender,
                                on_chain_nonce=lambda: self.chain.nonce(sender), reserve_unsent=RESERVE_UNSENT,
                                node_has=self.chain.known, sign=sign, action=action, asset=asset,
                                amount_units=amount_units)

    # --- waiting ------------------------------------------------------------------------

    def _finish(self, row: ChainTx) -> SentTx:
        if row.status in ("mined", "reverted"):
            return self._result(row, replayed=True)
        if row.status == "dropped":
            raise _dropped_error(row)
        return self._settle(row)

    def _settle(self, row: ChainTx) -> SentTx:
        """Wait for the receipt and its confirmations, looking after the transaction meanwhile."""
        deadline = time.monotonic() + self.receipt_timeout_s
        next_look, gap_since = time.monotonic(), None
        notes: list[str] = []
        while True:
            receipt = self.chain.receipt(row.tx_hash)
            if receipt is not None and self.chain.block_number() - receipt.block_number + 1 >= self.confirmations:
                # Then the other records at its nonce (a no-op an operator's release left unconfirmed: it can
                # never be mined now), and the no-ops below it, if it filled a gap: they are mined now.
                return self._record(row, receipt, note="; ".join(notes) or None,
                                    settle=[*(range(row.nonce) if notes else ()), row.nonce])
            now = time.monotonic()
            if receipt is None and now >= next_look:
                row, gap_since = self._look(row, gap_since, notes)
                next_look = now + self.look_every_s
            if now > deadline:
                state = "not mined" if receipt is None else f"mined in block {receipt.block_number}, not confirmed"
                raise ChainUnavailableError(f"transaction {row.tx_hash} {state} after {self.receipt_timeout_s:g}s; "
                                            "it stays recorded and a retry waits for the same transaction")
            time.sleep(self.poll_s)

    def _record(self, row: ChainTx, receipt: Receipt, note: str | None = None, settle: list[int] | None = None
                ) -> SentTx:
        """Record ``row``'s receipt, then bring the other open records at ``settle`` up to date."""
        stored = self._store_receipt(row, receipt)
        if settle:
            self._settle_open(settle)
        return replace(self._result(stored, replayed=False), note=note)

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
