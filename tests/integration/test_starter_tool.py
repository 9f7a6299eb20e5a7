"""The starter project's tool creates its table on first use: workers that start together on a fresh database
must all get it, not fail on each other's CREATE TABLE."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from engine.local.starter.tools import credits
from tests.conftest import postgres_database

pytestmark = pytest.mark.integration


def _race(url: str, threads: int) -> list[BaseException]:
    start, failed = threading.Barrier(threads), []

    def first_use() -> None:
        start.wait()
        try:
            credits._engine.__wrapped__(url).dispose()  # uncached: each thread is a process starting
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failed.append(exc)

    workers = [threading.Thread(target=first_use) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return failed


@pytest.mark.parametrize("attempt", range(3))
def test_workers_starting_together_on_fresh_postgres_all_get_the_table(postgres_url: str, attempt: Any) -> None:
    url = postgres_database(postgres_url)
    assert _race(url, threads=8) == []
    engine = sa.create_engine(url)
    assert sa.inspect(engine).has_table("starter_credits")
    assert {i["name"] for i in sa.inspect(engine).get_indexes("starter_credits")} == {
        "ix_starter_credits_customer_id"}
    engine.dispose()
