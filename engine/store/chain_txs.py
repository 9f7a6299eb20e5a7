"""Chain transactions and sender locks: the records that make sending exactly once.

The sending itself (sign, broadcast, await) is ``engine.adapters.chain_tx``;
this module only reads and writes the records, so no row leaves the store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine.store.tables import ChainSenderRow, ChainTransactionRow, utcnow


class ChainTx(BaseModel):
    """A transaction as recorded: signed before it is sent, updated as it is sent and mined."""

    idempotency_key: str
    chain_id: int
    sender: str
    nonce: int
    tx_hash: str
    raw_tx: str
    tx: dict[str, Any]
    action: dict[str, Any] = {}
    asset: str | None = None
    amount_units: str | None = None
    status: str  # signed | sent | mined | reverted | dropped
    block_number: int | None = None
    gas_used: int | None = None
    revert_reason: str | None = None  # why it reverted, or why it was dropped (what took its nonce)
    broadcasts: int = 0
    created_at: datetime
    mined_at: datetime | None = None


class SignedTx(BaseModel):
    """What signing a transaction under a nonce gave: to be recorded before it is sent."""

    tx_hash: str
    raw_tx: str
    tx: dict[str, Any]


def _view(row: ChainTransactionRow) -> ChainTx:
    return ChainTx.model_validate(row, from_attributes=True)


def get_transaction(session: Session, *, key: str) -> ChainTx | None:
    """The transaction recorded for an action's idempotency key, or None."""
    row = session.get(ChainTransactionRow, key)
    return _view(row) if row else None


def record_signed(session: Session, *, key: str, chain_id: int, sender: str, on_chain_nonce: Callable[[], int],
                  reserve_unsent: timedelta, sign: Callable[[int], SignedTx], action: dict[str, Any],
                  asset: str | None, amount_units: int | None,
                  node_has: Callable[[str], bool] | None = None) -> ChainTx:
    """Lock the sender, pick its next nonce, sign under it and record the result, in one transaction.

    The nonce is the lowest from the node's pending one (``on_chain_nonce``) that no
    transaction of ours on its way holds (sent, or signed less than ``reserve_unsent`` ago,
    or signed earlier and held by the node all the same, as ``node_has`` tells by its hash:
    a broadcast whose answer was lost): a gap below a transaction the node queues (it lost
    the ones before) is filled, not queued behind. A concurrent attempt of the same action
    that recorded first wins: its record is returned.
    """
    _lock_sender(session, chain_id, sender)
    existing = session.get(ChainTransactionRow, key)
    if existing is not None:
        return _view(existing)
    on_chain = on_chain_nonce()
    held = {r.nonce for r in _held(session, chain_id, sender, reserve_unsent, node_has, lambda n: n >= on_chain)}
    nonce = on_chain
    while nonce in held:
        nonce += 1
    row = _add(session, key=key, chain_id=chain_id, sender=sender, nonce=nonce, signed=sign(nonce), action=action,
               asset=asset, amount_units=amount_units)
    session.commit()
    session.refresh(row)
    return _view(row)


def claim_nonces(session: Session, *, chain_id: int, sender: str, nonces: list[int], reserve_unsent: timedelta,
                 sign_noop: Callable[[int], SignedTx], action: dict[str, Any],
                 node_has: Callable[[str], bool] | None = None) -> list[ChainTx]:
    """What goes to each of ``nonces`` (a gap), under the sender's lock: the transactions of ours on their way
    that hold them (to broadcast again, same bytes; ``node_has`` as for :func:`record_signed`), and for every
    nonce none holds a no-op, signed and recorded here (``action``, plus the nonce), before anything is
    broadcast."""
    _lock_sender(session, chain_id, sender)
    held = {r.nonce: r for r in _held(session, chain_id, sender, reserve_unsent, node_has, lambda n: n in nonces)}
    rows = [held.get(nonce) or _add_noop(session, chain_id=chain_id, sender=sender, nonce=nonce,
                                         signed=sign_noop(nonce), action=action) for nonce in nonces]
    session.commit()  # once: the sender's lock holds until every no-op is recorded
    for row in rows:
        session.refresh(row)
    return [_view(row) for row in rows]


def record_noop(session: Session, *, chain_id: int, sender: str, nonce: int,
                sign: Callable[[list[ChainTx]], SignedTx], action: dict[str, Any]) -> ChainTx:
    """Under the sender's lock, sign a no-op for ``nonce`` (``sign`` gets the open transactions at that nonce,
    which it must outbid) and record it before it is broadcast."""
    _lock_sender(session, chain_id, sender)
    open_here = [_view(r) for r in _open(session, chain_id, sender) if r.nonce == nonce]
    row = _add_noop(session, chain_id=chain_id, sender=sender, nonce=nonce, signed=sign(open_here), action=action)
    session.commit()
    session.refresh(row)
    return _view(row)


def _add_noop(session: Session, *, chain_id: int, sender: str, nonce: int, signed: SignedTx,
              action: dict[str, Any]) -> ChainTransactionRow:
    key = f"noop:{chain_id}:{sender}:{nonce}:{signed.tx_hash[2:14]}"
    return _add(session, key=key, chain_id=chain_id, sender=sender, nonce=nonce, signed=signed,
                action={"kind": "noop", "nonce": nonce, **action}, asset=None, amount_units=None)


def _add(session: Session, *, key: str, chain_id: int, sender: str, nonce: int, signed: SignedTx,
         action: dict[str, Any], asset: str | None, amount_units: int | None) -> ChainTransactionRow:
    """A new record, status ``signed``, added to the session (the caller commits)."""
    row = ChainTransactionRow(idempotency_key=key, chain_id=chain_id, sender=sender, nonce=nonce,
                              tx_hash=signed.tx_hash, raw_tx=signed.raw_tx, tx=signed.tx, action=action, asset=asset,
                              amount_units=None if amount_units is None else str(amount_units), status="signed")
    session.add(row)
    return row


def _open(session: Session, chain_id: int, sender: str | None) -> list[ChainTransactionRow]:
    query = select(ChainTransactionRow).where(ChainTransactionRow.chain_id == chain_id,
                                              col(ChainTransactionRow.status).in_(("signed", "sent")))
    if sender is not None:
        query = query.where(ChainTransactionRow.sender == sender)
    return list(session.exec(query.order_by(col(ChainTransactionRow.nonce), col(ChainTransactionRow.created_at))))


def _held(session: Session, chain_id: int, sender: str, reserve_unsent: timedelta,
          node_has: Callable[[str], bool] | None, wanted: Callable[[int], bool]) -> list[ChainTransactionRow]:
    """Transactions of ours on their way at the ``wanted`` nonces: sent, or signed less than ``reserve_unsent``
    ago; after that, one the node never acknowledged gives its nonce up, unless the node has it all the same
    (``node_has``, asked by its hash: the answer to its broadcast was lost)."""
    cutoff = utcnow() - reserve_unsent
    return [r for r in _open(session, chain_id, sender) if wanted(r.nonce) and (
        r.status == "sent" or _aware(r.created_at) >= cutoff or (node_has is not None and node_has(r.tx_hash)))]


def open_transactions(session: Session, *, chain_id: int, sender: str | None = None) -> list[ChainTx]:
    """Transactions signed or sent and not yet settled (mined, reverted or dropped), by sender and nonce."""
    return sorted((_view(r) for r in _open(session, chain_id, sender)), key=lambda t: (t.sender, t.nonce))


def transactions_at(session: Session, *, chain_id: int, sender: str, nonce: int) -> list[ChainTx]:
    """Every transaction recorded at one nonce of a sender, oldest first."""
    rows = session.exec(select(ChainTransactionRow).where(
        ChainTransactionRow.chain_id == chain_id, ChainTransactionRow.sender == sender,
        ChainTransactionRow.nonce == nonce).order_by(col(ChainTransactionRow.created_at))).all()
    return [_view(r) for r in rows]


def recent_mined(session: Session, *, chain_id: int, sender: str, limit: int) -> list[ChainTx]:
    """The last ``limit`` transactions of a sender recorded as mined or reverted, newest first."""
    rows = session.exec(select(ChainTransactionRow).where(
        ChainTransactionRow.chain_id == chain_id, ChainTransactionRow.sender == sender,
        col(ChainTransactionRow.status).in_(("mined", "reverted")))
        .order_by(col(ChainTransactionRow.created_at).desc()).limit(limit)).all()
    return [_view(r) for r in rows]


def landed_nonces(session: Session, *, chain_id: int) -> dict[str, int]:
    """Per sender, the highest nonce of a transaction recorded as mined or reverted (it landed in a block)."""
    rows = session.exec(select(ChainTransactionRow.sender, func.max(ChainTransactionRow.nonce)).where(
        ChainTransactionRow.chain_id == chain_id, col(ChainTransactionRow.status).in_(("mined", "reverted")))
        .group_by(col(ChainTransactionRow.sender))).all()
    return {sender: int(nonce) for sender, nonce in rows}


def senders(session: Session, *, chain_id: int) -> list[str]:
    """The accounts that sent (or signed) transactions on a chain."""
    rows = session.exec(select(ChainTransactionRow.sender).where(ChainTransactionRow.chain_id == chain_id)
                        .distinct()).all()
    return sorted(rows)


def _lock_sender(session: Session, chain_id: int, sender: str) -> None:
    if session.get(ChainSenderRow, (chain_id, sender)) is None:
        session.add(ChainSenderRow(chain_id=chain_id, address=sender))
        try:
            session.commit()
        except IntegrityError:  # another process added it
            session.rollback()
    session.execute(update(ChainSenderRow)
                    .where(col(ChainSenderRow.chain_id) == chain_id, col(ChainSenderRow.address) == sender)
                    .values(locked_at=utcnow()))


def update_transaction(session: Session, /, *, key: str, **values: Any) -> ChainTx:
    """Set fields of a recorded transaction (status, receipt figures) and return it."""
    row = session.get(ChainTransactionRow, key)
    assert row is not None, f"no transaction was recorded under {key}"
    for name, value in values.items():
        setattr(row, name, value)
    session.add(row)
    session.commit()
    session.refresh(row)
    return _view(row)


def units_sent_since(session: Session, *, chain_id: int, sender: str, asset: str | None, since: datetime) -> int:
    """Smallest units of ``asset`` that ``sender`` sent (or has on its way) since ``since``."""
    rows = session.exec(select(ChainTransactionRow).where(
        ChainTransactionRow.chain_id == chain_id, ChainTransactionRow.sender == sender,
        ChainTransactionRow.asset == asset,
        col(ChainTransactionRow.status).in_(("signed", "sent", "mined")))).all()
    return sum(int(r.amount_units or 0) for r in rows if _aware(r.created_at) >= since)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
