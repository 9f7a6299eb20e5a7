"""Where a transaction of ours that is not mined stands, from what the node says: pure decisions, no I/O.

The sender (``chain_tx``) reads the node, asks :func:`assess`, and acts. The rule
that keeps every effect single: a signed transaction's nonce is only ever given
to something else (a no-op) once nothing of ours on its way holds it, and an
action is only declared *dropped* once its nonce is used, in a confirmed block,
by another transaction, so its own bytes can never be mined any more.

States, in the order they are decided:

- ``mined``: it has a receipt (wait for the confirmations, record it);
- ``consumed``: the account's confirmed nonce passed it and it has no receipt:
  another transaction took its nonce, it can never be mined (dropped);
- ``replaced``: another transaction holds its nonce, in the pool or in a block
  not yet confirmed: wait, it becomes ``consumed`` (or ``mined``, if ours wins);
- ``lost``: the node does not know it and its nonce is free: broadcast the same
  signed bytes again (same hash: it cannot be mined twice);
- ``gapped``: the node holds it, queued behind nonces nobody sent (the node was
  reset, or lost them): the nonces below it must be filled;
- ``pending``: in the pool, next in line: wait (if it lasts, fees are too low:
  an operator may release it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class TxState(StrEnum):
    """Where one transaction stands (see the module's docstring)."""

    MINED = "mined"
    CONSUMED = "consumed"
    REPLACED = "replaced"
    LOST = "lost"
    GAPPED = "gapped"
    PENDING = "pending"


@dataclass(frozen=True)
class NodeView:
    """What the node says about one transaction and its account, read in this order (the receipt last, so a
    nonce seen used and no receipt after it means another transaction used it)."""

    confirmed_nonce: int  # transactions of the account in blocks with the configured confirmations
    latest_nonce: int  # ... in the latest block
    pending_nonce: int  # ... plus those the pool holds ready (not those queued behind a missing nonce)
    known: bool  # the node has the transaction (in its pool or mined)
    mined: bool  # it has a receipt


def assess(nonce: int, view: NodeView) -> TxState:
    """Where the transaction at ``nonce`` stands."""
    if view.mined:
        return TxState.MINED
    if view.confirmed_nonce > nonce:
        return TxState.CONSUMED
    if view.latest_nonce > nonce or (not view.known and view.pending_nonce > nonce):
        return TxState.REPLACED
    if not view.known:
        return TxState.LOST
    return TxState.GAPPED if view.pending_nonce <= nonce else TxState.PENDING


def holes(nonce: int, view: NodeView) -> range:
    """The nonces below ``nonce`` that nothing in the node holds: what keeps a lost or gapped transaction
    from being mined (empty in every other state)."""
    if assess(nonce, view) not in (TxState.LOST, TxState.GAPPED):
        return range(0)
    return range(view.pending_nonce, nonce)


def next_nonce(pending_nonce: int, held: Iterable[int]) -> int:
    """The nonce for a new transaction: the lowest from the node's pending one that no transaction of ours on
    its way holds. A nonce below a held one that nothing holds (a gap) is used, so nothing queues behind it."""
    taken = set(held)
    nonce = pending_nonce
    while nonce in taken:
        nonce += 1
    return nonce


def replacement_fees(current: dict[str, int], *replaced: dict[str, object]) -> dict[str, int]:
    """EIP-1559 fees for a transaction that must replace ``replaced`` at their nonce: the current fees, and
    at least a fifth above each of theirs (nodes want a tenth more before they swap one in their pool)."""
    fee, tip = int(current["maxFeePerGas"]), int(current["maxPriorityFeePerGas"])
    for tx in replaced:
        fee = max(fee, _bumped(tx.get("maxFeePerGas")))
        tip = max(tip, _bumped(tx.get("maxPriorityFeePerGas")))
    return {"maxFeePerGas": max(fee, tip), "maxPriorityFeePerGas": tip}


def _bumped(value: object) -> int:
    number = int(value, 0) if isinstance(value, str) else value if isinstance(value, int) else 0
    return number * 6 // 5 + 1
