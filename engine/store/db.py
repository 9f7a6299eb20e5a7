"""The database: one :class:`Database` per process, its engine, migrations and sessions.

Code outside ``engine.store`` holds a ``Database`` and calls repository
functions through :meth:`Database.call`; it never opens a session or imports
SQLAlchemy itself.

A SQLite file is created owner-only (0600, in a 0700 folder when the folder is new) before SQLite
opens it; SQLite gives its WAL and shared-memory files the database file's mode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import Session, create_engine

from engine.private import private_dir, private_file, tighten

_MIGRATIONS = Path(__file__).parent / "migrations"
_P = ParamSpec("_P")
_T = TypeVar("_T")
StoreError = SQLAlchemyError  # what reading or writing the database raises, for callers outside the store


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


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for SQLite (file, WAL, foreign keys) or PostgreSQL. ``read_only``: a SQLite file is opened as it
    is (``mode=ro``: no WAL switched on, its mode not tightened, nothing written beside it), as a snapshot must
    be; a PostgreSQL URL is used as given (a replica's read-only credentials make it read-only)."""
    if read_only and (path := _sqlite_file(url)) is not None:
        # Connected by hand: a URI in SQLAlchemy's URL is unquoted on the way, and a `#` or `?` in the path would
        # end the file name there (and the read-only mode with it).
        uri = f"file:{quote(path, safe='/')}?mode=ro"
        return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False,
                                                                         timeout=30))
    if make_url(url).get_backend_name() == "sqlite":
        _private_sqlite(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:  # DBAPI connection: sqlite3's here
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # synchronous stays FULL: the chain outbox's record of a signed transaction must survive a power
            # cut before the transaction is broadcast, or a retry could sign another one.
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    _private_sqlite(url)
    command.upgrade(_config(url), "head")


class Database:
    """One database, built once per process from its URL and handed to whatever reads or writes it.

    Processes that own the schema (worker, UI, ``airlock up``, ``airlock db upgrade``) call
    :meth:`migrate`; short commands call :meth:`ready`, which migrates only a database that is
    not yet at the newest revision (a fresh SQLite file, say).
    """

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, read_only=read_only)  # first: it creates the state folder of a SQLite file

    def __repr__(self) -> str:
        return f"Database({self.url.split('@')[-1]})"

    def migrate(self) -> Database:
        """Bring the schema to the newest revision (idempotent)."""
        migrate(self.url)
        return self

    def at_head(self) -> bool:
        """Whether the schema is at the newest revision."""
        heads = set(ScriptDirectory.from_config(_config(self.url)).get_heads())
        with self.engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads()) == heads

    def ready(self) -> Database:
        """This database, migrated first only if it is behind."""
        return self if self.at_head() else self.migrate()

    def call(self, fn: Callable[Concatenate[Session, _P], _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(session, **kwargs)`` in a session of its own: how code outside the store uses a repository."""
        with Session(self.engine) as session:
            return fn(session, *args, **kwargs)
