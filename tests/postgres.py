"""A throwaway PostgreSQL cluster on a free port, from Debian's binaries (tests and benchmarks)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.local import processes as stack


def _postgres_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not versions:
        raise FileNotFoundError(f"PostgreSQL binary {name} not found; .ci/run installs Debian's postgresql")
    return str(versions[-1])


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster (as the ``postgres`` user when run as root); yield its URL; stop and remove it.

    Raises:
        FileNotFoundError: PostgreSQL is not installed.
    """
    for stale in Path(tempfile.gettempdir()).glob("airlock-pg-*"):  # left by a run that was killed
        pid_file = stale / "postmaster.pid"
        if not pid_file.exists() or not stack.pid_alive(int(pid_file.read_text().split()[0])):
            shutil.rmtree(stale, ignore_errors=True)
    initdb, postgres = _postgres_bin("initdb"), _postgres_bin("postgres")
    # Not under pytest's tmp dir: that is private to root and postgres must reach it.
    data = Path(tempfile.mkdtemp(prefix="airlock-pg-"))
    port = stack.free_port()
    user: dict[str, int] = {}
    if os.geteuid() == 0:  # postgres refuses to run as root
        account = pwd.getpwnam("postgres")
        os.chown(data, account.pw_uid, account.pw_gid)
        user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    subprocess.run([initdb, "-D", str(data), "-U", "airlock", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, **user)  # type: ignore[call-overload]
    log = open(data / "server.log", "ab")  # noqa: SIM115 - closed below
    server = subprocess.Popen([postgres, "-D", str(data), "-p", str(port), "-k", str(data), "-h", "127.0.0.1"],
                              stdout=log, stderr=subprocess.STDOUT, preexec_fn=stack.die_with_parent,
                              **user)  # type: ignore[call-overload]
    try:
        stack.wait_until(lambda: stack.port_open("127.0.0.1", port), "postgres", server, 30, data / "server.log")
        yield f"postgresql+psycopg://airlock@127.0.0.1:{port}/postgres"
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: open pool connections do not hold it up
        server.wait(30)
        log.close()
        shutil.rmtree(data, ignore_errors=True)
