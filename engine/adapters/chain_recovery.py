"""Recovering what the node lost: lost transactions, gaps, dropped actions, and the operator's release.

The sender (``chain_tx``) waits for a receipt; every ``look_every_s`` meanwhile
it looks at the node here (:mod:`engine.adapters.chain_nonces` decides where
the transaction stands). Lost, it is broadcast again, the same bytes; queued
behind nonces nobody sent for ``stuck_after_s``, those get our own
transactions on their way (again, the same bytes) or no-ops (0-value
transfers to ourselves), at most ``MAX_AUTO_FILL`` of them unasked; its nonce
used by another transaction in a confirmed block, it is *dropped*: recorded
with what took the nonce, and its action fails with
:class:`TransactionDroppedError` (nothing was paid). An action is never signed
again under another nonce.

An operator releases a nonce held by a transaction that will not be mined
(``airlock senders release``: :meth:`Recovery.release_plan`, then
:meth:`Recovery.release`): a no-op outbids it at the same nonce, and whichever
is mined settles its record. Records left open at a nonce the chain used are
brought up to date here too (:meth:`Recovery._settle_open`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.adapters.chain_nonces import TxState, assess, holes
from engine.adapters.chain_outbox import RESERVE_UNSENT, Outbox, _answer, _dropped_error, _sender_lock
from engine.errors import ChainUnavailableError, TransactionDroppedError
from engine.store import chain_txs
from engine.store.chain_txs import ChainTx

MAX_AUTO_FILL = 16  # nonces a waiting transaction fills with no-ops on its own; more is the operator's call
_LOST_NOTE = "the node had lost it: the same signed transaction was broadcast again"


class Recovery(Outbox):
    """What a sender does about a transaction the node lost or left behind a gap, and the operator's release."""

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



def _settled_line(before: ChainTx, after: ChainTx | None) -> str:
    status = after.status if after else before.status
    detail = f": {after.revert_reason}" if after and after.status == "dropped" and after.revert_reason else ""
    return f"  {before.tx_hash} (nonce {before.nonce}, {before.action.get('kind', 'transaction')}): {status}{detail}"

