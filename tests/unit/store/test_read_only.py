"""A SQLite file opened read-only (``airlock gate``'s snapshot) is that file, whatever its path holds, and stays
unwritten: a `#` or `?` in the path ended the file name there before, and opened a new, writable file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from engine.store.db import make_engine


@pytest.mark.parametrize("name", ["hash#tag", "q?mark", "pct%41x", "sp ace", "amp&semi;", "é"])
def test_the_named_file_is_read_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    snapshot = folder / f"{name}.db"
    with sqlite3.connect(snapshot) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    db.close()
    taken = snapshot.read_bytes()
    engine = make_engine(f"sqlite:///{quote(str(snapshot))}", read_only=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar() == 1
        with pytest.raises(OperationalError, match="readonly"):
            conn.execute(text("INSERT INTO t VALUES (2)"))
    engine.dispose()
    assert snapshot.read_bytes() == taken
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([name, f"{name}.db"])
