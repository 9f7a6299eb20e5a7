"""The local stack and long-running processes: up, down, status, worker, ui, demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable

import typer

from engine.cli._app import JSON, _fail, _process, _settings, app, db_app, exit_code, out, run_client_command
from engine.config import Settings
from engine.errors import AirlockError
from engine.local import stack as localstack


def _steps(as_json: bool) -> tuple[list[dict[str, str]], Callable[[str], None]]:
    """Where ``up``/``down`` report each step: the terminal, or a list printed as JSON at the end."""
    steps: list[dict[str, str]] = []

    def say(line: str) -> None:
        if as_json:
            part, _, said = line.partition(": ")
            steps.append({"part": part, "said": said} if said else {"part": "", "said": line})
        else:
            out.print(line, highlight=False)

    return steps, say


def _print_steps(steps: list[dict[str, str]], settings: Settings, error: str | None = None) -> None:
    print(json.dumps({"steps": steps, "error": error,
                      "status": [r.__dict__ for r in localstack.status(settings)]}))


@app.command()
def up(chain: bool | None = typer.Option(None, "--chain/--no-chain", help="Start anvil with the demo token "
                                           "(default: when a workflow of the project names a chain_id)."),
       as_json: bool = JSON) -> None:
    """Start Temporal, OPA, the scripted model, a worker, the UI and, for chain workflows, anvil (idempotent)."""
    settings = _settings()
    steps, say = _steps(as_json)
    try:
        localstack.up(settings, say, chain=chain)
    except AirlockError as exc:
        if as_json:
            _print_steps(steps, settings, str(exc))
            raise typer.Exit(1) from None
        _fail(str(exc))
    if as_json:
        _print_steps(steps, settings)


@app.command()
def down(as_json: bool = JSON) -> None:
    """Stop what `airlock up` started."""
    settings = _settings()
    steps, say = _steps(as_json)
    localstack.down(settings, say)
    if as_json:
        _print_steps(steps, settings)


@app.command()
def status(as_json: bool = JSON) -> None:
    """Each part of the local stack and its address."""
    rows = localstack.status(_settings())
    if as_json:
        print(json.dumps([r.__dict__ for r in rows]))
        return
    for r in rows:
        style = {"running": "green", "external": "cyan"}.get(r.state, "red")
        pid = f" pid {r.pid}" if r.pid else ""
        out.print(f"{r.name:9} [{style}]{r.state:8}[/] {r.address}{pid} {r.detail}", highlight=False)


@app.command()
def keys(as_json: bool = JSON) -> None:
    """Where the local assertion key pair is (generated once); workers elsewhere need the public key only."""
    from engine.boundary.identity import local_key_files

    private, public = local_key_files(_settings())
    if as_json:
        print(json.dumps({"private_key_file": str(private), "public_key_file": str(public)}))
        return
    out.print(f"private key (UI, API and local CLI sign with it): {private}\n"
              f"public key (workers verify with it, AIRLOCK_AUTH__VERIFY_KEY_FILE): {public}", highlight=False,
              soft_wrap=True)


@app.command()
def worker() -> None:
    """Run a worker in the foreground (for deployments)."""
    from engine.runtime.temporal import connect
    from engine.runtime.worker import build_worker, check_settings, limit_malloc_arenas

    settings = _settings()
    limit_malloc_arenas(settings.worker_malloc_arenas)

    async def go() -> None:
        check_settings(settings)
        client = await connect(settings.temporal, settings.otel)
        worker = build_worker(client, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # stop polling, let what runs finish, then leave
            loop.add_signal_handler(sig, stop.set)
        try:
            async with worker:
                print(f"worker ready on task queue {settings.temporal.task_queue}", flush=True)
                await stop.wait()
                print(f"worker stopping: no new tasks; what it runs may finish for up to "
                      f"{settings.worker_graceful_shutdown_s:g} s", flush=True)
        finally:
            worker.tracing.flush()  # type: ignore[attr-defined]
        print("worker stopped", flush=True)

    run_client_command(go())


UI_RECURSION_LIMIT = 10_000


@app.command()
def ui() -> None:
    """Serve the web UI and JSON API in the foreground."""
    import uvicorn

    from engine.runtime.temporal import connect
    from engine.store.db import Database
    from engine.ui.app import create_app

    settings = _settings()
    try:
        web = create_app(settings, db=Database(settings.db_url).migrate(),
                         connect=lambda: connect(settings.temporal, settings.otel))
    except AirlockError as exc:
        _fail(str(exc), exit_code(exc))
    # web3's py_ecc raised the recursion limit to 100000 on import: with it a parser going deep enough overflows
    # the C stack (the process dies) instead of raising RecursionError. Bodies are depth-checked before they are
    # parsed (BoundedBody); this is the backstop, set before the server's threads start.
    sys.setrecursionlimit(min(sys.getrecursionlimit(), UI_RECURSION_LIMIT))
    print(f"ui ready at http://{settings.ui.host}:{settings.ui.port}", flush=True)
    # proxy_headers off: the client's address is the peer's, or what a trusted proxy says (auth.client_address)
    uvicorn.run(web, host=settings.ui.host, port=settings.ui.port, log_level="warning", proxy_headers=False)
    if _process["hard_exit"]:  # same teardown hazard as any Temporal client (see run_client_command)
        sys.stdout.flush()
        os._exit(0)


@app.command()
def demo(workflow: str = typer.Option("treasury-payout", "--workflow", "-w",
                                      help="treasury-payout (on the local chain) or support-refund")) -> None:
    """Run a demo workflow end to end on the local stack (scripted model)."""
    from engine.local.demo import run_demo

    settings = _settings()

    async def go() -> None:
        try:
            await run_demo(settings, out, workflow)
        except AirlockError as exc:
            _fail(str(exc))

    run_client_command(go())


@db_app.command("upgrade")
def db_upgrade(as_json: bool = JSON) -> None:
    """Apply schema migrations to the configured database."""
    from engine.store.db import migrate

    settings = _settings()
    migrate(settings.db_url)
    if as_json:
        print(json.dumps({"database": settings.db_url.split("@")[-1], "up_to_date": True}))
        return
    out.print(f"database at {settings.db_url.split('@')[-1]} is up to date", highlight=False)
