"""State is its owner's only: the state folder 0700; the database, keys, the UI secret and logs 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.boundary.identity import local_key_files
from engine.config import Settings
from engine.local import processes as stack
from engine.private import private_dir, private_file, write_private
from engine.store.db import make_engine, migrate
from engine.ui.auth import secret_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_folders_and_files_are_created_owner_only_and_older_ones_tightened(tmp_path: Path) -> None:
    assert mode(private_dir(tmp_path / "a" / "b")) == 0o700
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    (old / "f").write_text("x")
    (old / "f").chmod(0o644)
    assert mode(private_dir(old)) == 0o700 and mode(private_file(old / "f")) == 0o600
    assert (old / "f").read_text() == "x"  # tightened, not emptied
    write_private(tmp_path / "secret", "s3cret")
    assert mode(tmp_path / "secret") == 0o600 and (tmp_path / "secret").read_text() == "s3cret"


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])  # any SQLite driver in the URL
def test_the_sqlite_database_and_its_wal_files_are_owner_only(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}:///{tmp_path / 'state' / 'airlock.db'}"
    migrate(url)
    engine = make_engine(url)
    with engine.begin() as conn:  # a write: SQLite creates the WAL and shared-memory files
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        files = sorted(p.name for p in (tmp_path / "state").iterdir())
        assert files == ["airlock.db", "airlock.db-shm", "airlock.db-wal"]
        assert {p.name: mode(p) for p in (tmp_path / "state").iterdir()} == dict.fromkeys(files, 0o600)
    engine.dispose()
    assert mode(tmp_path / "state") == 0o700

    older = tmp_path / "older.db"
    older.touch(mode=0o644)
    make_engine(f"sqlite:///{older}").dispose()
    assert mode(older) == 0o600


def test_keys_and_the_ui_secret_are_owner_only_in_an_owner_only_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # as an older version made it
    settings = Settings(project_dir=tmp_path, state_dir=state)
    private, _ = local_key_files(settings)
    assert (mode(state), mode(private.parent), mode(private)) == (0o700, 0o700, 0o600)

    (state / "ui-secret").write_text("older-secret")
    (state / "ui-secret").chmod(0o644)
    state.chmod(0o755)
    assert secret_key(settings) == "older-secret"
    assert (mode(state), mode(state / "ui-secret")) == (0o700, 0o600)
    (state / "ui-secret").unlink()
    assert len(secret_key(settings)) > 40 and mode(state / "ui-secret") == 0o600


def test_background_processes_log_and_create_files_owner_only(tmp_path: Path) -> None:
    log = tmp_path / "state" / "logs" / "child.log"
    proc = stack.launch_python(["-c", "open('made-by-child', 'w').write('x'); print('hello')"], log, cwd=tmp_path,
                               tethered=True)
    assert proc.wait(30) == 0
    assert (mode(log.parent), mode(log), mode(tmp_path / "made-by-child")) == (0o700, 0o600, 0o600)
    assert log.read_text() == "hello\n"
