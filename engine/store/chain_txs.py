"""Chain transactions and sender locks: the records that make sending exactly once.

The sending itself (sign, broadcast, await) is ``engine.adapters.chain_tx``;
this module only reads and writes the records, so no row leaves the store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import update
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
    revert_reason: str | None = None
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
                  asset: str | None, amount_units: int | None) -> ChainTx:
    """Lock the sender, pick its next nonce, sign under it and record the result, in one transaction.

    The nonce is the node's pending one (``on_chain_nonce``), or past every transaction of
    ours still on its way (sent, or signed less than ``reserve_unsent`` ago). A concurrent
    attempt of the same action that recorded first wins: its record is returned.
    """
    _lock_sender(session, chain_id, sender)
    existing = session.get(ChainTransactionRow, key)
    if existing is not None:
        return _view(existing)
    on_chain = on_chain_nonce()
    cutoff = utcnow() - reserve_unsent
    rows = session.exec(select(ChainTransactionRow).where(
        ChainTransactionRow.chain_id == chain_id, ChainTransactionRow.sender == sender,
        col(ChainTransactionRow.status).in_(("signed", "sent")), ChainTransactionRow.nonce >= on_chain)).all()
    held = [r.nonce for r in rows if r.status == "sent" or _aware(r.created_at) >= cutoff]
    nonce = max([on_chain, *(n + 1 for n in held)])
    signed = sign(nonce)
    row = ChainTransactionRow(idempotency_key=key, chain_id=chain_id, sender=sender, nonce=nonce,
                              tx_hash=signed.tx_hash, raw_tx=signed.raw_tx, tx=signed.tx, action=action, asset=asset,
                              amount_units=None if amount_units is None else str(amount_units), status="signed")
    session.add(row)
    session.commit()
    session.refresh(row)
    return _view(row)


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
