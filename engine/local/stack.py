"""``airlock up / down / status``: the local stack as background processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from engine.boundary import bundle as policybundle
from engine.boundary.policy import OpaPolicy
from engine.config import Settings
from engine.errors import ChainUnavailableError, StackError
from engine.local import devchain
from engine.local import processes as stack
from engine.private import private_dir
from engine.redact import redact_text, safe_url
from engine.store import chain_txs
from engine.store.db import Database, StoreError

COMPONENTS = ("temporal", "opa", "anvil", "model", "worker", "ui")
# The local chain lives as long as the state folder, as the store that records its transactions does: anvil
# saves it every few seconds and when it stops. It writes a save in place (truncate, then write), so it writes
# ANVIL_SAVING, and `up` makes that the ANVIL_STATE it starts from only when it reads as whole.
ANVIL_STATE, ANVIL_SAVING = "anvil-state.json", "anvil-state.json.new"


def _saved_chain(state: Path, say: Callable[[str], None]) -> Path:
    """The local chain's last whole save (promoting anvil's latest one when it is whole)."""
    saved, latest = state / ANVIL_STATE, state / ANVIL_SAVING
    if latest.is_file():
        try:
            json.loads(latest.read_bytes())
        except ValueError:
            say(f"anvil: its latest save {latest} is incomplete (anvil stopped while writing it); starting from "
                f"the one before, {saved}")
        else:
            os.replace(latest, saved)
    return saved
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class ComponentStatus:
    """One line of ``airlock status``."""

    name: str
    state: str  # running | stopped | external
    address: str
    pid: int | None = None
    detail: str = ""


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def addresses(settings: Settings) -> dict[str, tuple[str, int]]:
    """Host and port of each component, from settings."""
    return {
        "temporal": _host_port(settings.temporal.address, 7233),
        "opa": _host_port(settings.opa.url, 8181),
        "anvil": _host_port(settings.chain.rpc_url, 8545),
        "model": _host_port(settings.llm.scripted_url, 8600),
    }


def _is_ours(files: stack.StateFiles, name: str) -> stack.Service | None:
    service = files.load(name)
    if service and stack.pid_alive(service.pid):
        return service
    return None


def status(settings: Settings) -> list[ComponentStatus]:
    """What runs, where, and whether `airlock up` started it."""
    files = stack.StateFiles(settings.state_dir or Path(".airlock"))
    out = []
    for name, (host, port) in addresses(settings).items():
        ours = _is_ours(files, name)
        address = f"{host}:{port}"
        if ours:
            out.append(ComponentStatus(name, "running", ours.address, ours.pid))
        elif stack.port_open(host, port):
            out.append(ComponentStatus(name, "external", address, detail="not started by airlock up"))
        else:
            out.append(ComponentStatus(name, "stopped", address))
        if name == "opa" and out[-1].state != "stopped":
            out[-1].detail = "; ".join(filter(None, [out[-1].detail, _served_bundle(settings)]))
    worker = _is_ours(files, "worker")
    out.append(ComponentStatus("worker", "running" if worker else "stopped",
                               f"task queue {settings.temporal.task_queue}", worker.pid if worker else None))
    ui = _is_ours(files, "ui")
    ui_address = f"http://{settings.ui.host}:{settings.ui.port}"
    ui_state = "running" if ui else ("external" if stack.port_open(settings.ui.host, settings.ui.port) else "stopped")
    out.append(ComponentStatus("ui", ui_state, ui_address, ui.pid if ui else None))
    return out


def _served_revision(settings: Settings) -> str | None:
    """``OpaPolicy.revision()`` from sync code that may itself run inside an event loop (the demo)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, OpaPolicy(settings.opa).revision()).result()


def _served_bundle(settings: Settings) -> str:
    revision = _served_revision(settings)
    return f"bundle {revision}" if revision else "no policy bundle with a revision (decisions are denied)"


def _policy_hint(settings: Settings) -> str:
    """For an OPA `airlock up` started earlier: whether it still serves what the policies folder holds."""
    try:
        wanted = policybundle.policies_revision(settings.policies_dir or Path("policies"))
    except (StackError, OSError, ValueError) as exc:
        return f"; the policies folder cannot be bundled: {exc}"
    served = _served_revision(settings)
    if served == wanted:
        return f", bundle {served}"
    return (f", bundle {served}; the policies folder has changed since (now {wanted}): "
            "`airlock down && airlock up` serves it")


def needs_chain(settings: Settings) -> bool:
    """Whether a workflow of the project names a chain (``chain_id``): only then does `up` start anvil."""
    from engine.runtime.definitions import loadable_specs

    return any(spec.chain_id is not None
               for _, spec in loadable_specs(settings.workflows_dir or Path("workflows"), settings.project_dir))


def up(settings: Settings, say: Callable[[str], None], chain: bool | None = None) -> None:
    """Start every component not already running (idempotent); anvil only when ``chain`` (by default: when a
    workflow of the project names a chain)."""
    state = private_dir(settings.state_dir or Path(".airlock"))  # also tightens one an older version made
    if chain is None:
        chain = needs_chain(settings)
    files = stack.StateFiles(state)
    addr = addresses(settings)
    launchers: dict[str, Callable[[int, Path], subprocess.Popen[bytes]]] = {
        "temporal": lambda port, log: stack.launch_temporal(port, settings.temporal.ui_port,
                                                            state / "temporal.db", log),
        "opa": lambda port, log: stack.launch_opa(port, settings.policies_dir or Path("policies"), log,
                                                  settings.project_dir, bundle=state / "policy-bundle.tar.gz"),
        "anvil": lambda port, log: stack.launch_anvil(port, log, settings.project_dir, load=_saved_chain(state, say),
                                                      save=state / ANVIL_SAVING),
        "model": lambda port, log: stack.launch_scripted(port, log),
    }
    if not chain:
        del launchers["anvil"]
        say("anvil: not started (no workflow of the project names a chain_id; `airlock up --chain` starts it)")
    for name, launch in launchers.items():
        host, port = addr[name]
        if _is_ours(files, name):
            say(f"{name}: already running at {host}:{port}" + (_policy_hint(settings) if name == "opa" else ""))
            continue
        if host not in _LOOPBACK or stack.port_open(host, port):
            say(f"{name}: using the one at {host}:{port} (not started here)")
            continue
        proc = launch(port, files.log(name))
        files.save(stack.Service(name, proc.pid, f"{host}:{port}", str(files.log(name))))
        served = f", bundle {_served_revision(settings)}" if name == "opa" else ""
        say(f"{name}: started at {host}:{port} (pid {proc.pid}, log {files.log(name)}{served})")
    chain_env = _prepare_chain(settings, state, files, say) if chain else {}
    _start_child(settings, files, say, "worker", f"task queue {settings.temporal.task_queue}", chain_env)
    ui_address = f"{settings.ui.host}:{settings.ui.port}"
    if not _is_ours(files, "ui") and stack.port_open(settings.ui.host, settings.ui.port):
        say(f"ui: using the one at {ui_address} (not started here)")
    else:
        _start_child(settings, files, say, "ui", f"http://{ui_address}")


def _prepare_chain(settings: Settings, state: Path, files: stack.StateFiles,
                   say: Callable[[str], None]) -> dict[str, str]:
    """On the local dev chain: deploy the demo token, fund the treasury, point the worker at its keystore.

    Raises:
        StackError: the store cannot be read.
        BehindStoreError: the chain is behind what the store records as mined on it (it lost its saved state, or
            is another chain); a worker and an anvil `up` started are stopped first, so nothing signs on it.
    """
    host, _ = addresses(settings)["anvil"]
    if settings.chain.chain_id != devchain.DEV_CHAIN_ID or host not in _LOOPBACK:
        return {}
    try:
        landed = Database(settings.db_url).migrate().call(chain_txs.landed_nonces, chain_id=devchain.DEV_CHAIN_ID)
    except StoreError as exc:
        raise StackError(f"cannot read the store at {safe_url(settings.db_url)}: "
                         f"{redact_text(str(exc), settings.db_url)}") from None
    try:
        ready = devchain.prepare(settings.chain.rpc_url, state, landed,
                                 started_here=_is_ours(files, "anvil") is not None)
    except devchain.BehindStoreError:
        for name in ("worker", "anvil"):
            _stop(files, name, say, ": the chain is behind the store")
        raise
    except (StackError, ChainUnavailableError) as exc:
        say(f"chain: the treasury demo is not available: {exc}")
        return {}
    if ready.topped_up:
        say(f"chain: the treasury was low; topped up to {devchain.TREASURY_FUNDING} tUSD from the deployer")
    say(f"chain: demo token tUSD at {ready.token}; treasury {ready.treasury} "
        f"(key in the keystore {ready.keystore})")
    if settings.chain.signer_key is not None or settings.chain.keystore_path is not None:
        return {}  # a configured signer wins
    return {"AIRLOCK_CHAIN__KEYSTORE_PATH": str(ready.keystore),
            "AIRLOCK_CHAIN__KEYSTORE_PASSWORD_FILE": str(ready.password_file)}


def _start_child(settings: Settings, files: stack.StateFiles, say: Callable[[str], None], name: str,
                 address: str, extra_env: dict[str, str] | None = None) -> None:
    """Start ``airlock worker`` or ``airlock ui`` in the background; wait for its ready line."""
    if (service := _is_ours(files, name)) is not None:
        say(f"{name}: already running at {service.address} (pid {service.pid})")
        return
    log = files.log(name)
    size = log.stat().st_size if log.exists() else 0
    env = {"AIRLOCK_PROJECT_DIR": str(settings.project_dir), "AIRLOCK_STATE_DIR": str(settings.state_dir),
           "AIRLOCK_WORKFLOWS_DIR": str(settings.workflows_dir), "AIRLOCK_TOOLS_DIR": str(settings.tools_dir),
           "AIRLOCK_POLICIES_DIR": str(settings.policies_dir), "AIRLOCK_DATABASE_URL": settings.db_url,
           **(extra_env or {})}
    proc = stack.launch_python(["-m", "engine.cli", name], log, env={**env, "PYTHONUNBUFFERED": "1"},
                               cwd=settings.project_dir)
    stack.wait_until(lambda: f"{name} ready" in log.read_text(errors="replace")[size:], name, proc, 60, log)
    files.save(stack.Service(name, proc.pid, address, str(log)))
    say(f"{name}: started at {address} (pid {proc.pid}, log {log})")


def down(settings: Settings, say: Callable[[str], None]) -> None:
    """Stop only what `airlock up` started, worker first."""
    files = stack.StateFiles(settings.state_dir or Path(".airlock"))
    for name in reversed(COMPONENTS):
        _stop(files, name, say)


def _stop(files: stack.StateFiles, name: str, say: Callable[[str], None], why: str = "") -> None:
    """Stop the component `up` started under ``name``, if it still runs, and forget it."""
    service = files.load(name)
    if service is None:
        return
    if stack.pid_alive(service.pid):
        stack.stop_process(service.pid)
        say(f"{name}: stopped (pid {service.pid}){why}")
    files.forget(name)
