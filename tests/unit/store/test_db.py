"""The Database object: migrating once, readiness, and the support ledger's tables through migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import inspect
from sqlmodel import SQLModel, create_engine

from engine.store import repo
from engine.store.db import Database, _config
from tools import support


def test_ready_migrates_a_fresh_database_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'airlock.db'}")
    assert not db.at_head()
    assert db.ready() is db and db.at_head()
    assert {"runs", "support_orders", "support_refunds"} <= set(inspect(db.engine).get_table_names())
    assert db.call(repo.get_run, run_id="nope") is None


def test_the_ledger_migration_keeps_tables_an_older_version_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(_config(url), "0007")
    old = create_engine(url)
    SQLModel.metadata.create_all(old, tables=[support.Order.__table__, support.Refund.__table__])  # type: ignore[list-item]
    assert Database(url).ready().at_head()  # created only where missing
    support.reset_demo_ledger(url)
    assert support.list_refunds(url) == []


def test_the_ledger_works_on_a_database_never_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    support.reset_demo_ledger(url)
    assert Database(url).at_head()
    assert support.list_refunds(url) == []
