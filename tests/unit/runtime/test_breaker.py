"""The model layer's circuit breaker: when it opens, and what its stores count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.adapters.llm import BREAKER_COOLDOWN_S, BREAKER_FAILURES, BreakerState, MemoryBreakers, opens_until

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_the_breaker_opens_after_consecutive_failures_and_closes_after_the_cooldown() -> None:
    assert all(opens_until(n, NOW) is None for n in range(BREAKER_FAILURES))
    until = opens_until(BREAKER_FAILURES, NOW)
    assert until == NOW + timedelta(seconds=BREAKER_COOLDOWN_S)
    state = BreakerState(BREAKER_FAILURES, until)
    assert state.is_open(NOW + timedelta(seconds=BREAKER_COOLDOWN_S - 0.1))
    assert not state.is_open(NOW + timedelta(seconds=BREAKER_COOLDOWN_S + 0.1))
    # tried again after the cooldown and failed again: open anew at once
    assert opens_until(BREAKER_FAILURES + 1, NOW) is not None


async def test_a_success_resets_the_count() -> None:
    breakers = MemoryBreakers()
    for n in range(1, BREAKER_FAILURES):
        assert await breakers.failed("k", "endpoint") == n
    await breakers.succeeded("k")
    assert await breakers.states(["k", "other"]) == {}
    assert await breakers.failed("k", "endpoint") == 1
    await breakers.opened("k", NOW)
    assert await breakers.states(["k"]) == {"k": BreakerState(1, NOW)}
