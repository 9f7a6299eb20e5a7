"""The model endpoints' circuit breakers a worker uses: the ones in the shared database.

So an endpoint that failed on one worker is skipped by every worker, and a
worker that starts (or restarts) knows which endpoints are failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime

from engine.adapters.llm import BreakerState
from engine.store import breakers
from engine.store.db import Database


class StoredBreakers:
    """:class:`engine.adapters.llm.Breakers` kept in the database (off the event loop)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def states(self, keys: Sequence[str]) -> Mapping[str, BreakerState]:
        found = await asyncio.to_thread(self._db.call, breakers.breaker_states, keys=list(keys))
        return {key: BreakerState(r.failures, r.open_until) for key, r in found.items()}

    async def failed(self, key: str, endpoint: str) -> int:
        return await asyncio.to_thread(self._db.call, breakers.count_breaker_failure, key=key, endpoint=endpoint)

    async def opened(self, key: str, until: datetime) -> None:
        await asyncio.to_thread(self._db.call, breakers.open_breaker, key=key, until=until)

    async def succeeded(self, key: str) -> None:
        await asyncio.to_thread(self._db.call, breakers.close_breaker, key=key)
