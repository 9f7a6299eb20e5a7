"""Engines and migrations.

A SQLite file is created owner-only (0600, in a 0700 folder when the folder is new) before SQLite
opens it; SQLite gives its WAL and shared-memory files the database file's mode.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import create_engine

from engine.private import private_dir, private_file, tighten

_MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL (any driver: ``sqlite+pysqlite:///...`` too), else None."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    path = parsed.database or ""
    return path if parsed.get_backend_name() == "sqlite" and path not in ("", ":memory:") else None


def _private_sqlite(url: str) -> None:
    path = _sqlite_file(url)
    if path is None:
        return
    file = Path(path)
    if not file.parent.exists():
        private_dir(file.parent)
    private_file(file)
    for suffix in ("-wal", "-shm", "-journal"):  # left by an older version with wider modes
        tighten(Path(path + suffix))


def make_engine(url: str) -> Engine:
    """An engine for SQLite (file, WAL, foreign keys) or PostgreSQL."""
    if make_url(url).get_backend_name() == "sqlite":
        _private_sqlite(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    _private_sqlite(url)
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
