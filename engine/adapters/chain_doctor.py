"""What ``airlock doctor`` says about the accounts that send: stuck transactions and how to clear them.

Reads only (the store and the node; no key): every transaction of ours signed
or sent and not settled for longer than ``stuck_after_s``, where it stands
(``chain_nonces.assess``), the nonces below it nothing holds, and the exact
command that clears it; plus recent transactions recorded as mined that the
node has no receipt for (it was reset or its chain reorganised: Airlock never
replays them on its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from engine.adapters.chain import Chain
from engine.adapters.chain_nonces import NodeView, TxState, assess, holes
from engine.store import chain_txs
from engine.store.chain_txs import ChainTx
from engine.store.db import Database

RECENT_MINED = 20  # recorded-as-mined transactions checked for a receipt, per sender

_ADVICE = {
    TxState.MINED: "mined, not yet recorded: its action's retry records it, or the command does (it sends "
                   "nothing: the nonce is used)",
    TxState.CONSUMED: "never mined and never will be: another transaction took its nonce; its action's retry "
                      "fails it as dropped, or the command records it (it sends nothing: the nonce is used)",
    TxState.REPLACED: "another transaction holds its nonce (in the pool, or in a block not yet confirmed): wait",
    TxState.LOST: "the node does not know it (it was reset, or dropped it from its pool): its action's retry "
                  "broadcasts it again; if its run has ended, release the nonce (it will never be paid)",
    TxState.GAPPED: "queued behind nonces nothing holds (the node lost them): its action's retry fills them; "
                    "if its run has ended, release the nonce (it will never be paid)",
    TxState.PENDING: "in the node's pool, not mined (fees too low, or no blocks): release the nonce to replace it "
                     "with a no-op (it will never be paid)",
}


@dataclass(frozen=True)
class Stuck:
    """One transaction of ours not settled past the deadline."""

    tx: ChainTx
    state: TxState
    age_s: float
    gap: list[int]  # nonces below it nothing holds
    advice: str
    command: str | None  # what clears it


@dataclass
class SenderReport:
    """One sending account on the configured chain."""

    sender: str
    latest_nonce: int
    pending_nonce: int
    open_count: int
    stuck: list[Stuck] = field(default_factory=list)
    lost_mined: list[ChainTx] = field(default_factory=list)  # recorded mined; the node has no receipt



def inspect_senders(chain: Chain, db: Database, *, chain_id: int, confirmations: int, stuck_after_s: float
            ) -> list[SenderReport]:
    """Every sender recorded on ``chain_id``, as the store and the node see it."""
    reports = []
    now = datetime.now(UTC)
    for sender in db.call(chain_txs.senders, chain_id=chain_id):
        latest, pending = chain.nonce(sender, "latest"), chain.nonce(sender)
        confirmed = latest
        if confirmations > 1:
            confirmed = chain.nonce(sender, max(chain.block_number() - confirmations + 1, 0))
        open_txs = db.call(chain_txs.open_transactions, chain_id=chain_id, sender=sender)
        report = SenderReport(sender=sender, latest_nonce=latest, pending_nonce=pending, open_count=len(open_txs))
        for tx in open_txs:
            age = (now - _aware(tx.created_at)).total_seconds()
            if age < stuck_after_s:
                continue
            view = NodeView(confirmed_nonce=confirmed, latest_nonce=latest, pending_nonce=pending,
                            known=chain.known(tx.tx_hash), mined=chain.receipt(tx.tx_hash) is not None)
            state = assess(tx.nonce, view)
            command = None if state is TxState.REPLACED else f"airlock senders release --nonce {tx.nonce}"
            report.stuck.append(Stuck(tx=tx, state=state, age_s=age, gap=list(holes(tx.nonce, view)),
                                      advice=_ADVICE[state], command=command))
        for tx in db.call(chain_txs.recent_mined, chain_id=chain_id, sender=sender, limit=RECENT_MINED):
            if chain.receipt(tx.tx_hash) is None:
                report.lost_mined.append(tx)
        reports.append(report)
    return reports


def describe(tx: ChainTx) -> str:
    """A transaction in one phrase: what its action was."""
    action = tx.action
    kind = action.get("kind", "transaction")
    if kind == "noop":
        return "no-op" + (f" released by {action['released_by']}" if action.get("released_by") else "")
    parts = [kind, str(action.get("amount", "")), str(action.get("asset", ""))]
    target = action.get("to") or action.get("spender")
    return " ".join(p for p in parts if p) + (f" to {target}" if target else "")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def nonces_text(nonces: list[int]) -> str:
    """A list of nonces in words: ``0, 1, 2``, or ``0..499 (500 nonces)`` when it is long."""
    if len(nonces) > 5 and nonces == list(range(nonces[0], nonces[-1] + 1)):
        return f"{nonces[0]}..{nonces[-1]} ({len(nonces)} nonces)"
    return ", ".join(map(str, nonces))
