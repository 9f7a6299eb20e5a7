"""The endpoints' breakers in the database: what one worker counts, another reads (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.store import breakers
from engine.store.db import Database

UNTIL = datetime(2030, 1, 1, tzinfo=UTC)


def test_failures_counted_by_one_process_are_read_by_another(db_url: str) -> None:
    first, second = Database(db_url), Database(db_url)  # two workers
    assert first.call(breakers.breaker_states, keys=["k"]) == {}
    assert [first.call(breakers.count_breaker_failure, key="k", endpoint="gpt @ https://x/v1") for _ in range(2)] \
        == [1, 2]
    assert second.call(breakers.count_breaker_failure, key="k", endpoint="gpt @ https://x/v1") == 3
    second.call(breakers.open_breaker, key="k", until=UNTIL)
    assert first.call(breakers.breaker_states, keys=["k", "other"]) == {
        "k": breakers.BreakerRecord(failures=3, open_until=UNTIL)}
    first.call(breakers.close_breaker, key="k")
    assert second.call(breakers.breaker_states, keys=["k"]) == {"k": breakers.BreakerRecord(failures=0,
                                                                                          open_until=None)}
