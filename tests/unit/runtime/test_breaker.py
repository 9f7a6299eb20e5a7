"""The model layer's circuit breaker on a fake clock."""

from __future__ import annotations

from engine.adapters.llm import BREAKER_COOLDOWN_S, BREAKER_FAILURES, Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_consecutive_failures_and_closes_after_the_cooldown() -> None:
    clock = Clock()
    breaker = Breaker(clock=clock)
    for _ in range(BREAKER_FAILURES - 1):
        breaker.failed()
    assert not breaker.is_open()
    breaker.failed()
    assert breaker.is_open()
    clock.now += BREAKER_COOLDOWN_S - 0.1
    assert breaker.is_open()
    clock.now += 0.2
    assert not breaker.is_open()


def test_a_success_resets_the_count() -> None:
    breaker = Breaker(clock=Clock())
    for _ in range(BREAKER_FAILURES - 1):
        breaker.failed()
    breaker.succeeded()
    for _ in range(BREAKER_FAILURES - 1):
        breaker.failed()
    assert not breaker.is_open() and breaker.failures == BREAKER_FAILURES - 1
