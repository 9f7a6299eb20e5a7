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

A node can lose a transaction for good (reset, or dropped from its pool).
While waiting, the sender looks at the node (``chain_nonces`` decides where
the transaction stands): lost, it is broadcast again, the same bytes; queued
behind nonces nobody sent for ``stuck_after_s``, those get our own
transactions on their way (again, the same bytes) or no-ops (0-value
transfers to ourselves); its nonce used by another transaction in a confirmed
block, it is *dropped*: recorded with what took the nonce, and its action
fails with :class:`TransactionDroppedError` (nothing was paid). An action is
never signed again under another nonce. An operator releases a nonce held by
a transaction that will not be mined (``airlock senders release``): a no-op
outbids it at the same nonce, and whichever is mined settles its record.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eth_account import Account

from engine.adapters.chain import Chain, Receipt
from engine.adapters.chain_nonces import NodeView, TxState, assess, holes, replacement_fees
from engine.config import ChainSettings
from engine.errors import (
    ChainUnavailableError,
    InputError,
    ToolExecutionError,
    TransactionDroppedError,
    TransactionRevertedError,
)
from engine.store import chain_txs
from engine.store.chain_txs import ChainTx, SignedTx
from engine.store.db import Database

# A signed transaction whose broadcast was never acknowledged keeps its nonce this
# long; after that, a node that does not know it lets the nonce be used again
# (the old record can then never be mined, so nothing is paid twice).
RESERVE_UNSENT = timedelta(minutes=5)
NOOP_GAS = 21_000
MAX_AUTO_FILL = 16  # nonces a waiting transaction fills with no-ops on its own; more is the operator's call
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
_LOST_NOTE = "the node had lost it: the same signed transaction was broadcast again"
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
    note: str | None = None  # how it was recovered, when the node had lost it


class TxSender:
    """Sends transactions from one signer on one chain, each action at most once.

    While it waits for a receipt it looks at the node every ``look_every_s``
    (:mod:`engine.adapters.chain_nonces` decides): a transaction the node lost
    is broadcast again (the same bytes); one queued behind nonces nobody sent
    for ``stuck_after_s`` gets them filled (by our own transactions on their
    way, broadcast again, or by no-ops); one whose nonce another transaction
    took in a confirmed block is dropped and its action fails, saying so.
    """

    def __init__(self, chain: Chain, db: Database, signer: Signer, *, chain_id: int, confirmations: int = 1,
                 receipt_timeout_s: float = 120.0, poll_s: float = 0.2, stuck_after_s: float = 30.0,
                 look_every_s: float = 1.0) -> None:
        self.chain, self.db, self.signer = chain, db, signer
        self.chain_id, self.confirmations = chain_id, confirmations
        self.receipt_timeout_s, self.poll_s = receipt_timeout_s, poll_s
        self.stuck_after_s, self.look_every_s = stuck_after_s, look_every_s

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

    def _get(self, key: str) -> ChainTx | None:
        return self.db.call(chain_txs.get_transaction, key=key)

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

    def _sign(self, tx: dict[str, Any]) -> SignedTx:
        full = {**tx, "chainId": self.chain_id, "type": 2}
        raw, tx_hash = self.signer.sign(full)
        return SignedTx(tx_hash=tx_hash, raw_tx=raw, tx={**full, "from": self.signer.address})

    def _sign_noop(self, nonce: int, replacing: list[ChainTx] | tuple[ChainTx, ...] = ()) -> SignedTx:
        """A 0-value transfer to ourselves at ``nonce``: it uses the nonce and does nothing else."""
        fees = replacement_fees(self.chain.fees(), *(t.tx for t in replacing))
        return self._sign({"to": self.signer.address, "data": "0x", "value": 0, "nonce": nonce, "gas": NOOP_GAS,
                           **fees})

    # --- sending and waiting -------------------------------------------------------------

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

    def _look(self, row: ChainTx, gap_since: float | None, notes: list[str]) -> tuple[ChainTx, float | None]:
        """Act on where the transaction stands; returns it as recorded and since when it waits on a gap."""
        view = self._view(row)
        state = assess(row.nonce, view)
        if state is TxState.CONSUMED:
            raise self._drop(row)
        if state is TxState.LOST or (row.status == "signed" and state in (TxState.GAPPED, TxState.PENDING)):
            before = row.broadcasts
            row = self._broadcast(row)
            if state is TxState.LOST and row.broadcasts > before and _LOST_NOTE not in notes:
                notes.append(_LOST_NOTE)
        gap = holes(row.nonce, view)
        if not gap:
            return row, None
        now = time.monotonic()
        patience = min(self.stuck_after_s, self.receipt_timeout_s / 2)  # within one attempt: its clock restarts
        if gap_since is None or now - gap_since < patience:
            return row, gap_since if gap_since is not None else now
        if len(gap) > MAX_AUTO_FILL:  # not a lost transaction or two: a reset chain, or another chain
            raise ChainUnavailableError(
                f"transaction {row.tx_hash} (nonce {row.nonce}) waits behind nonces {gap.start}..{gap.stop - 1} that "
                f"nothing holds (the node lost them): more than {MAX_AUTO_FILL} to fill with no-ops unasked; "
                f"`airlock doctor` shows it, `airlock senders release --nonce {row.nonce}` clears it")
        filled = self._fill(gap, row)
        if filled:
            notes.append(f"nonce{'s' if len(filled) > 1 else ''} {', '.join(map(str, filled))} below it, which "
                         "the node had lost, filled with no-ops")
        return row, None

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

    def _fill(self, gap: range, row: ChainTx) -> list[int]:
        """Give each nonce of ``gap`` (below ``row``) to what may take it: a transaction of ours on its way that
        holds it (broadcast again), else a no-op. Returns the nonces no-ops were sent for."""
        sender = self.signer.address
        if row.sender != sender:
            return []
        with _sender_lock(self.chain_id, sender):
            claimed = self.db.call(chain_txs.claim_nonces, chain_id=self.chain_id, sender=sender, nonces=list(gap),
                                   reserve_unsent=RESERVE_UNSENT, node_has=self.chain.known, sign_noop=self._sign_noop,
                                   action={"why": f"fills a gap below {row.tx_hash} (nonce {row.nonce})"})
        for tx in claimed:
            self._broadcast(tx)
        return [tx.nonce for tx in claimed if tx.action.get("kind") == "noop"]

    def _drop(self, row: ChainTx) -> TransactionDroppedError:
        """Record that ``row`` can never be mined (its nonce is used, in a confirmed block, by another)."""
        dropped = self._update(row.idempotency_key, status="dropped", revert_reason=self._taken_by(row))
        return _dropped_error(dropped)

    def _taken_by(self, row: ChainTx) -> str:
        """What took ``row``'s nonce, in words (updating its record if it is one of ours)."""
        others = [t for t in self.db.call(chain_txs.transactions_at, chain_id=row.chain_id, sender=row.sender,
                                          nonce=row.nonce) if t.idempotency_key != row.idempotency_key]
        for other in others:
            receipt = self.chain.receipt(other.tx_hash)
            if receipt is None:
                continue
            if other.status in ("signed", "sent"):
                self._store_receipt(other, receipt)
            if other.action.get("kind") != "noop":
                return f"transaction {other.tx_hash} of another action took nonce {row.nonce}"
            if other.action.get("released_by"):
                return (f"nonce {row.nonce} was released by the operator ({other.action['released_by']}: "
                        f"\"{other.action.get('reason') or 'no reason given'}\"); no-op {other.tx_hash} took it")
            return f"no-op {other.tx_hash} took nonce {row.nonce} ({other.action.get('why') or 'it filled a gap'})"
        return f"a transaction Airlock did not send (from {row.sender}, outside Airlock) took nonce {row.nonce}"

    def _settle_open(self, nonces: range | list[int]) -> list[ChainTx]:
        """Bring the open records of this sender at ``nonces`` up to date with the chain (mined or dropped)."""
        settled = []
        wanted = set(nonces)
        for row in self.db.call(chain_txs.open_transactions, chain_id=self.chain_id, sender=self.signer.address):
            if row.nonce not in wanted:
                continue
            view = self._view(row)
            if view.mined and (receipt := self.chain.receipt(row.tx_hash)) is not None:
                self._store_receipt(row, receipt)
                settled.append(row)
            elif assess(row.nonce, view) is TxState.CONSUMED:
                self._drop(row)
                settled.append(row)
        return settled

    def _record(self, row: ChainTx, receipt: Receipt, note: str | None = None, settle: list[int] | None = None
                ) -> SentTx:
        """Record ``row``'s receipt, then bring the other open records at ``settle`` up to date."""
        stored = self._store_receipt(row, receipt)
        if settle:
            self._settle_open(settle)
        return replace(self._result(stored, replayed=False), note=note)

    def _store_receipt(self, row: ChainTx, receipt: Receipt) -> ChainTx:
        reason = None
        if receipt.status != 1:
            tx = {k: row.tx[k] for k in ("from", "to", "data", "value")}
            reason = self.chain.revert_reason(row.tx_hash, tx, receipt.block_number)
        return self._update(row.idempotency_key, status="mined" if receipt.status == 1 else "reverted",
                            block_number=receipt.block_number, gas_used=receipt.gas_used, revert_reason=reason,
                            mined_at=datetime.now(UTC))

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

    # --- the operator's release ------------------------------------------------------------

    def release_plan(self, nonce: int) -> ReleasePlan:
        """What releasing ``nonce`` would do, read from the store and the node; nothing is sent."""
        sender = self.signer.address
        latest = self.chain.nonce(sender, "latest")
        pending = self.chain.nonce(sender)
        open_txs = self.db.call(chain_txs.open_transactions, chain_id=self.chain_id, sender=sender)
        return ReleasePlan(sender=sender, nonce=nonce, latest_nonce=latest, pending_nonce=pending,
                           used=latest > nonce, replaces=[t for t in open_txs if t.nonce == nonce],
                           gap=list(range(pending, nonce)), held_above=sorted({t.nonce for t in open_txs
                                                                               if t.nonce > nonce}))

    def release(self, plan: ReleasePlan, *, reason: str, by: str) -> str:
        """Make ``plan.nonce`` used by a no-op (outbidding what holds it; filling the nonces below it that
        nothing holds), wait for it, and record what the chain then says. Returns what happened, in words.

        A nonce the chain already used only gets its records brought up to date. Nothing is recorded as dropped
        without a confirmed block that used its nonce for another transaction.

        Raises:
            ChainUnavailableError: the node refused the no-op (nothing was released; the no-op stays recorded,
                unsent), or did not answer whether it took it (it is recorded as sent, unconfirmed: it may
                still be mined, and the records settle once a block uses the nonce), or could not be reached.
        """
        if plan.used:
            settled = self._settle_open([plan.nonce])
            return (f"nonce {plan.nonce} of {plan.sender} is already used on chain: nothing was sent"
                    + "".join(f"\n{_settled_line(t, self._get(t.idempotency_key))}" for t in settled))
        # The no-op first: what it replaces may sit queued in the pool, and filling the gap below first would
        # let that be mined.
        with _sender_lock(self.chain_id, plan.sender):
            noop = self.db.call(chain_txs.record_noop, chain_id=self.chain_id, sender=plan.sender, nonce=plan.nonce,
                                sign=lambda open_here: self._sign_noop(plan.nonce, open_here),
                                action={"released_by": by, "reason": reason,
                                        "replaces": [t.tx_hash for t in plan.replaces]})
        try:
            self.chain.send_raw(noop.raw_tx)
        except ChainUnavailableError as exc:
            answer = _answer(exc)
            if answer in ("taken", "refused"):  # the node does not hold it; its record stays as signed
                raise ChainUnavailableError(
                    f"the node did not take the no-op {noop.tx_hash} for nonce {plan.nonce}, so nothing was "
                    f"released: {exc}; `airlock doctor` shows where the nonce stands") from None
            if answer != "known":  # a timeout, a broken connection: the node may hold it, and may mine it
                self._update(noop.idempotency_key, status="sent", broadcasts=1)
                raise ChainUnavailableError(
                    f"unconfirmed: the node did not answer whether it took the no-op {noop.tx_hash} for nonce "
                    f"{plan.nonce} ({exc}). It is recorded as sent and may still be mined; nothing is recorded as "
                    f"dropped until a block uses nonce {plan.nonce}. `airlock doctor` shows where it stands; "
                    "releasing the nonce again outbids it") from None
        self._update(noop.idempotency_key, status="sent", broadcasts=1)
        if plan.gap:
            with _sender_lock(self.chain_id, plan.sender):
                below = self.db.call(chain_txs.claim_nonces, chain_id=self.chain_id, sender=plan.sender,
                                     nonces=plan.gap, reserve_unsent=RESERVE_UNSENT, node_has=self.chain.known,
                                     sign_noop=self._sign_noop,
                                     action={"why": f"fills a gap below nonce {plan.nonce}, released by the "
                                                    f"operator ({by})"})
            for tx in below:
                self._broadcast(tx)
        deadline = time.monotonic() + self.receipt_timeout_s
        candidates = [noop, *plan.replaces]
        while not any(self.chain.receipt(t.tx_hash) for t in candidates):
            if time.monotonic() > deadline:
                return (f"no-op {noop.tx_hash} for nonce {plan.nonce} was sent but is not mined after "
                        f"{self.receipt_timeout_s:g}s; `airlock doctor` shows where it stands")
            time.sleep(self.poll_s)
        settled = self._settle_open([*plan.gap, plan.nonce])
        lines = [_settled_line(t, self._get(t.idempotency_key)) for t in settled]
        mined = self._get(noop.idempotency_key)
        if mined is not None and mined.status == "mined":
            head = f"nonce {plan.nonce} is released: no-op {noop.tx_hash} took it (block {mined.block_number})"
        else:
            head = f"nonce {plan.nonce} was not released: the transaction that held it was mined first"
        return "\n".join([head, *lines])


@dataclass(frozen=True)
class ReleasePlan:
    """What ``airlock senders release`` is about to do."""

    sender: str
    nonce: int
    latest_nonce: int
    pending_nonce: int
    used: bool  # the chain already used the nonce: only the records are brought up to date
    replaces: list[ChainTx]  # open transactions of ours at the nonce: they will never be mined
    gap: list[int]  # nonces below it nothing holds: filled first (no-ops, or ours on their way sent again)
    held_above: list[int]  # nonces of open transactions of ours above it (waiting behind it)

    @property
    def pointless(self) -> bool:
        """Nothing holds the nonce and nothing waits behind it: a release would only burn nonces."""
        return not (self.used or self.replaces or self.held_above or self.nonce < self.pending_nonce)


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


def _settled_line(before: ChainTx, after: ChainTx | None) -> str:
    status = after.status if after else before.status
    detail = f": {after.revert_reason}" if after and after.status == "dropped" and after.revert_reason else ""
    return f"  {before.tx_hash} (nonce {before.nonce}, {before.action.get('kind', 'transaction')}): {status}{detail}"


def _dropped_error(row: ChainTx) -> TransactionDroppedError:
    reason = row.revert_reason or f"another transaction took nonce {row.nonce}"
    return TransactionDroppedError(
        f"dropped: transaction {row.tx_hash} (nonce {row.nonce}) was never mined and never will be: {reason}; "
        "nothing was paid for this action (propose it again if it is still wanted)",
        tx_hash=row.tx_hash, nonce=row.nonce, reason=reason)


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
            receipt_timeout_s=settings.receipt_timeout_s, stuck_after_s=settings.stuck_after_s)

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
