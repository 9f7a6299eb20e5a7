"""What chain tools get from the worker: the node client, the sender's address, and sending once.

:class:`ChainAccess` is built once per worker from the chain settings (a bad
keystore fails at start) and handed to tools through their context; the
signing key stays inside its :class:`~engine.adapters.chain_tx.Signer`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.adapters.chain import Chain
from engine.adapters.chain_tx import Signer, TxSender
from engine.config import ChainSettings
from engine.errors import ToolExecutionError
from engine.store.db import Database


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
