"""The migrations build exactly the tables and indexes the models declare (SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import engine.store.tables  # noqa: F401 - registers every table of the engine
import tools.support  # noqa: F401 - the demo ledger's tables, which migration 0008 creates
from engine.store.db import Database


def test_the_migrated_schema_matches_the_models(db_url: str) -> None:
    with Database(db_url).engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []
