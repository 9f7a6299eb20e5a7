"""The local stack: start, find and stop Temporal, OPA, anvil, the scripted model
and the worker as background processes.

Each started process leaves ``<state>/run/<name>.json`` (pid, address, log),
so ``airlock down`` stops only what ``airlock up`` started. Tests use the same
``launch_*`` functions on free ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.boundary import bundle as policybundle
from engine.errors import StackError
from engine.private import open_log, private_dir, tighten, write_private

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout: engine/local/processes.py


@dataclass
class Service:
    """One running component."""

    name: str
    pid: int
    address: str
    log: str


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str, project_dir: Path | None = None) -> str:
    """A binary from PATH, the venv, or a project-local ``.tools`` folder."""
    candidates = [shutil.which(name), str(Path(sys.executable).parent / name)]
    for root in filter(None, [project_dir, SOURCE_ROOT]):
        candidates += [str(root / ".tools" / "bin" / name), str(root / ".tools" / "node_modules" / ".bin" / name)]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise StackError(f"{name} not found on PATH or in .tools/; run ./dev setup (see README)")


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """Whether a GET answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            status: int = response.status  # urlopen is typed as returning Any
            return 200 <= status < 300
    except OSError:
        return False


def wait_until(check: Callable[[], object], what: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0,
               log: Path | None = None) -> None:
    """Poll ``check`` until true; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise StackError(f"{what} exited with code {proc.returncode} while starting\n{tail}")
        time.sleep(0.1)
    raise StackError(f"{what} not ready after {timeout:.0f}s")


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies (Linux), so a killed test run leaves nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None,
           tethered: bool = False) -> subprocess.Popen[bytes]:
    """Start a background process; ``tethered`` ones die with this process (tests).

    The log is 0600, and the child creates files owner-only (umask 077): Temporal's database, and
    whatever a worker or the UI writes into the state folder.
    """
    out = open_log(log)
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})}, cwd=cwd,
                            preexec_fn=die_with_parent if tethered else None, umask=0o077)


def launch_temporal(port: int, ui_port: int, db_file: Path | None, log: Path,
                    tethered: bool = False) -> subprocess.Popen[bytes]:
    """``temporal server start-dev`` with a SQLite file (owner-only) so runs survive restarts; in memory
    when ``db_file`` is None (benchmarks)."""
    files = _sqlite_files(db_file) if db_file else []
    if db_file:
        private_dir(db_file.parent)
    for path in files:  # one an older version left world-readable
        tighten(path)
    store = ["--db-filename", str(db_file)] if db_file else []
    for attempt in range(3):
        size = log.stat().st_size if log.exists() else 0
        proc = _spawn([find_binary("temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
                       "--ui-port", str(ui_port), *store, "--log-level", "warn"], log, tethered=tethered)
        wait_until(lambda: port_open("127.0.0.1", port), "temporal dev server", proc, 60, log)
        # The dev server picks ports for its internal services itself and, rarely, picks one that is
        # taken; it then dies a moment after the frontend opened. Give it that moment, and retry.
        time.sleep(1.5)
        if proc.poll() is None:
            for path in files:
                tighten(path)
            return proc
        if "address already in use" not in log.read_text(errors="replace")[size:] or attempt == 2:
            break
    raise StackError(f"temporal dev server exited with code {proc.returncode} while starting; see {log}")


def _sqlite_files(db_file: Path) -> list[Path]:
    return [db_file, *(db_file.with_name(db_file.name + s) for s in ("-wal", "-shm", "-journal"))]


def launch_opa(port: int, policies_dir: Path, log: Path, project_dir: Path | None = None,
               tethered: bool = False, bundle: Path | None = None) -> subprocess.Popen[bytes]:
    """``opa run --server`` on loopback, serving a bundle freshly built from the policies folder.

    The bundle (``bundle``, default ``policy-bundle.tar.gz`` beside the log) is what OPA decides with
    until it stops: ``--authorization=basic`` with the bundle's ``system.authz`` refuses every write
    through the REST API, so changing policy means rebuilding the bundle and starting OPA again.
    """
    opa = find_binary("opa", project_dir)
    bundle = bundle or log.parent / "policy-bundle.tar.gz"
    policybundle.build(opa, policies_dir, bundle)
    tighten(bundle)
    proc = _spawn([opa, "run", "--server", "--addr", f"127.0.0.1:{port}", "--authorization=basic",
                   "--log-level", "error", "--bundle", str(bundle)], log, tethered=tethered)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), "opa", proc, 30, log)
    return proc


ANVIL_STATE_INTERVAL_S = 2


def launch_anvil(port: int, log: Path, project_dir: Path | None = None, tethered: bool = False,
                 load: Path | None = None, save: Path | None = None) -> subprocess.Popen[bytes]:
    """An anvil node (chain id 31337): starting from the chain saved in ``load`` when there is one, and saving it
    to ``save`` every ``ANVIL_STATE_INTERVAL_S`` seconds and when it stops (on SIGTERM)."""
    args = ["--load-state", str(load)] if load is not None and load.is_file() else []
    if save is not None:
        args += ["--dump-state", str(save), "--state-interval", str(ANVIL_STATE_INTERVAL_S)]
    proc = _spawn([find_binary("anvil", project_dir), "--host", "127.0.0.1", "--port", str(port), "--silent",
                   *args], log, tethered=tethered)
    wait_until(lambda: port_open("127.0.0.1", port), "anvil", proc, 30, log)
    return proc


def launch_python(module_args: list[str], log: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None, tethered: bool = False) -> subprocess.Popen[bytes]:
    """A Python child (scripted model, worker) with this interpreter."""
    return _spawn([sys.executable, *module_args], log, env, cwd, tethered)


def launch_scripted(port: int, log: Path, tethered: bool = False) -> subprocess.Popen[bytes]:
    """The scripted OpenAI-compatible endpoint."""
    proc = launch_python(["-m", "uvicorn", "engine.local.scripted:create_app", "--factory", "--host", "127.0.0.1",
                          "--port", str(port), "--log-level", "warning"], log, cwd=SOURCE_ROOT, tethered=tethered)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), "scripted model", proc, 30, log)
    return proc


def stop_process(proc_or_pid: subprocess.Popen[bytes] | int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL if it lingers."""
    pid = proc_or_pid if isinstance(proc_or_pid, int) else proc_or_pid.pid
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(proc_or_pid, subprocess.Popen):
            if proc_or_pid.poll() is not None:
                return
        elif not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Whether a pid is a live (non-zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


class StateFiles:
    """The pid/address records of services started by ``airlock up``."""

    def __init__(self, state_dir: Path) -> None:
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def save(self, service: Service) -> None:
        private_dir(self.run_dir.parent)
        write_private(private_dir(self.run_dir) / f"{service.name}.json", json.dumps(asdict(service)))

    def load(self, name: str) -> Service | None:
        path = self.run_dir / f"{name}.json"
        return Service(**json.loads(path.read_text())) if path.exists() else None

    def forget(self, name: str) -> None:
        (self.run_dir / f"{name}.json").unlink(missing_ok=True)

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"
