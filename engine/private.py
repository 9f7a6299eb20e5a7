"""Owner-only state: folders 0700, files 0600.

The state folder (``.airlock/``) holds the SQLite database, Temporal's
``temporal.db``, the assertion and treasury keys, the UI's session secret and
the logs of ``airlock up``: runs, decisions and secrets that nobody else on the
machine may read. Everything that creates one of them goes through here; what
already exists with wider modes (from an older version) is tightened, as long as
it is ours.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

DIR_MODE, FILE_MODE = 0o700, 0o600


def tighten(path: Path) -> None:
    """Take group and other bits off ``path`` if it exists and belongs to us."""
    try:
        info = path.stat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(stat.S_IMODE(info.st_mode) & 0o700)
    except (FileNotFoundError, PermissionError):
        pass


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter: created 0700 (parents as usual), or tightened."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tighten(path)
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read: created empty 0600 if missing, else tightened."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        tighten(path)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file that is 0600 before the first byte lands in it."""
    fd = os.open(private_file(path), os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def open_log(path: Path) -> IO[bytes]:
    """A log for appending, 0600, in a 0700 folder (a child process writes to it)."""
    private_dir(path.parent)
    return os.fdopen(os.open(private_file(path), os.O_WRONLY | os.O_APPEND), "ab")
