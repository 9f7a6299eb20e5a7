"""The ``airlock`` command (Typer + Rich); the only place settings are loaded.

Exit codes: 0 success, 1 a refused or failed operation, 2 bad input (spec,
``--input``, arguments): nothing was started.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from sqlmodel import Session

from engine import localstack, render
from engine.config import Settings
from engine.errors import AirlockError, InputError, SpecError
from engine.spec import WorkflowSpec, add_import_roots, load_spec

app = typer.Typer(help="Airlock: agent workflows where the model proposes and a boundary decides.",
                  no_args_is_help=True, add_completion=False)
approvals_app = typer.Typer(help="The approval inbox, across all runs.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Approver accounts and API tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(approvals_app, name="approvals")
app.add_typer(db_app, name="db")
out = Console()
err = Console(stderr=True)


_overrides: dict[str, Any] = {}
_process = {"hard_exit": False}


def run_client_command(coro: Any) -> None:
    """Run a coroutine that used a Temporal client.

    As a console command, leave without interpreter teardown afterwards: the
    client's Rust threads can abort CPython's finalization with
    "PyGILState_Release" (temporalio/sdk-python#300), turning a success into
    SIGABRT. In-process callers (tests) get a normal return.
    """
    code = 0
    try:
        asyncio.run(coro)
    except typer.Exit as exc:
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    if not _process["hard_exit"]:
        if code:
            raise typer.Exit(code)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.callback()
def main(
    project_dir: Optional[Path] = typer.Option(None, "--project-dir", help="Project root [AIRLOCK_PROJECT_DIR]."),
    workflows_dir: Optional[Path] = typer.Option(None, "--workflows-dir", help="[AIRLOCK_WORKFLOWS_DIR]"),
    tools_dir: Optional[Path] = typer.Option(None, "--tools-dir", help="[AIRLOCK_TOOLS_DIR]"),
    policies_dir: Optional[Path] = typer.Option(None, "--policies-dir", help="[AIRLOCK_POLICIES_DIR]"),
) -> None:
    """Folders default to workflows/, tools/ and policies/ of the current directory."""
    given = {"project_dir": project_dir, "workflows_dir": workflows_dir, "tools_dir": tools_dir,
             "policies_dir": policies_dir}
    _overrides.update({k: v for k, v in given.items() if v is not None})


def _settings() -> Settings:
    settings = Settings(**_overrides)
    add_import_roots(*settings.import_roots)
    return settings


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _spec(path: Path, settings: Settings) -> WorkflowSpec:
    if not path.exists() and settings.workflows_dir:  # a bare name: look in the workflows folder
        for candidate in (settings.workflows_dir / f"{path}{ext}" for ext in (".yaml", ".yml", ".py")):
            if candidate.is_file():
                path = candidate
                break
    try:
        return load_spec(path, project_dir=settings.project_dir)
    except SpecError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)  # plain: one PATH:LINE line per issue, never wrapped
        raise typer.Exit(2) from exc


def parse_input(raw: str) -> dict[str, Any]:
    """``--input``: a JSON object, or ``@file`` holding one.

    Raises:
        InputError: naming the file, line and column of the problem.
    """
    where = "--input"
    if raw.startswith("@"):
        path = Path(raw[1:])
        where = str(path)
        if not path.is_file():
            raise InputError(f"--input: no such file {path}")
        raw = path.read_text()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise InputError(f"{where}: must be a JSON object, got {type(value).__name__}")
    return value


def _engine(settings: Settings):  # noqa: ANN202 - sqlalchemy Engine
    from engine.store.db import make_engine, migrate

    migrate(settings.db_url)
    return make_engine(settings.db_url)


async def _client(settings: Settings):  # noqa: ANN202 - temporalio Client
    from engine.temporal import connect

    try:
        return await connect(settings.temporal)
    except RuntimeError as exc:
        _fail(f"cannot reach Temporal at {settings.temporal.address}: {exc}. Start the stack with `airlock up`.")


@app.command()
def validate(paths: list[Path] = typer.Argument(..., help="Workflow specs (YAML or Python).")) -> None:
    """Check workflow specs; print PATH:LINE: field: message for each problem."""
    settings, failed = _settings(), False
    for path in paths:
        try:
            spec = load_spec(path, project_dir=settings.project_dir)
            out.print(f"{path}: ok ({spec.name} v{spec.version}, {len(spec.tool_specs)} tools)", highlight=False)
        except SpecError as exc:
            failed = True
            for issue in exc.issues:
                print(issue, file=sys.stderr)
    if failed:
        raise typer.Exit(2)


@app.command()
def run(
    path: Path = typer.Argument(..., help="Workflow spec."),
    input_: str = typer.Option("{}", "--input", help="JSON object, or @file."),
    as_user: str = typer.Option(..., "--as", help="Who requests the run."),
    tenant: str = typer.Option("default", help="Tenant the run belongs to."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to end."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Start a durable run of a workflow."""
    settings = _settings()
    spec = _spec(path, settings)
    try:
        run_input = parse_input(input_)
    except InputError as exc:
        _fail(str(exc), 2)
    run_client_command(_run(settings, spec, run_input, as_user, tenant, wait, as_json))


async def _run(settings: Settings, spec: WorkflowSpec, run_input: dict[str, Any], user: str, tenant: str,
               wait: bool, as_json: bool) -> None:
    from engine.runs import start_run

    client = await _client(settings)
    handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, run_input=run_input,
                             requested_by=user, tenant=tenant)
    if spec.model.provider == "scripted" and not as_json:
        err.print("[dim]model: scripted model (recorded turns, offline)[/]")
    if not wait:
        print(json.dumps({"run_id": handle.id, "status": "running"}) if as_json else f"started run {handle.id}")
        return
    result = await _await_with_progress(client, handle, quiet=as_json)
    if as_json:
        print(render.result_json(result))
    else:
        render.print_result(out, result)
    if result.status not in ("completed",):
        raise typer.Exit(1)


async def _await_with_progress(client, handle, *, quiet: bool):  # noqa: ANN001, ANN202
    from engine.runs import pending_actions

    task = asyncio.ensure_future(handle.result())
    shown: set[str] = set()
    while not task.done():
        await asyncio.wait([task], timeout=1.0)
        if task.done() or quiet:
            continue
        try:
            for action in await pending_actions(client, handle.id):
                if action.approval_id not in shown:
                    shown.add(action.approval_id)
                    reasons = "; ".join(action.call.decision.reasons) if action.call.decision else ""
                    err.print(f"waiting for approval {action.approval_id}: {action.call.tool}"
                              f"({render.args_summary(action.call.args)}) — {reasons}. "
                              f"Approve with `airlock approve {action.approval_id} --as USER`.", highlight=False)
        except Exception:  # noqa: BLE001 - progress is best effort; the result is what counts
            pass
    return task.result()


@approvals_app.command("list")
def approvals_list(
    as_json: bool = typer.Option(False, "--json"),
    all_: bool = typer.Option(False, "--all", help="Include decided and expired items."),
    run_id: Optional[str] = typer.Option(None, "--run", help="Only this run."),
) -> None:
    """Pending approvals across all runs, newest first."""
    from engine.store import repo

    with Session(_engine(_settings())) as session:
        items = repo.list_approvals(session, status=None if all_ else "pending", run_id=run_id)
    if as_json:
        print(json.dumps([i.model_dump(mode="json") for i in items]))
    elif not items:
        out.print("no pending approvals")
    else:
        out.print(render.approvals_table(items))


@approvals_app.command("show")
def approvals_show(approval_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Everything about one gated action."""
    from engine.store import repo

    with Session(_engine(_settings())) as session:
        item = repo.get_approval(session, approval_id=approval_id)
    if item is None:
        _fail(f"no approval {approval_id}")
    if as_json:
        print(item.model_dump_json())
    else:
        out.print(render.approval_panel(item), highlight=False)


def _decide(approval_id: str, decision: str, user: str, comment: Optional[str]) -> None:
    from engine.runs import decide_approval
    from engine.store import users

    settings = _settings()
    engine = _engine(settings)
    with Session(engine) as session:
        approver = users.get_user(session, name=user)
    if approver is None:
        _fail(f"no user {user}; add one with `airlock users add {user} --role ROLE`")

    async def go() -> None:
        client = await _client(settings)
        try:
            result = await decide_approval(client, engine, approval_id=approval_id, decision=decision,  # type: ignore[arg-type]
                                           approver=approver, comment=comment, source=f"cli:{_host()}")
        except AirlockError as exc:
            _fail(str(exc))
        extra = f" ({result.approvals}/{result.needed} approvals)" if result.status == "pending" else ""
        out.print(f"{approval_id}: {result.status}{extra}", highlight=False)

    run_client_command(go())


def _host() -> str:
    import socket

    return socket.gethostname()


@users_app.command("add")
def users_add(
    name: str,
    roles: list[str] = typer.Option([], "--role", help="A role the user holds (repeat for several)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    """Create an approver account (or reset its password and roles)."""
    from engine.store import users

    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    try:
        with Session(_engine(_settings())) as session:
            user = users.add_user(session, name=name, password=password, roles=roles)
    except InputError as exc:
        _fail(str(exc), 2)
    out.print(f"user {user.name}: roles {', '.join(user.roles) or '(none)'}", highlight=False)


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Approver accounts and their roles."""
    from engine.store import users

    with Session(_engine(_settings())) as session:
        items = users.list_users(session)
    if as_json:
        print(json.dumps([u.model_dump() for u in items]))
        return
    for u in items:
        out.print(f"{u.name:20} {', '.join(u.roles)}", highlight=False)


@users_app.command("token")
def users_token(name: str, label: str = typer.Option("", "--label")) -> None:
    """Create an API token for a user; it is shown once."""
    from engine.store import users

    try:
        with Session(_engine(_settings())) as session:
            print(users.create_token(session, user=name, label=label))
    except InputError as exc:
        _fail(str(exc), 2)


@app.command()
def approve(approval_id: str, as_user: str = typer.Option(..., "--as"),
            comment: Optional[str] = typer.Option(None, "--comment")) -> None:
    """Approve a pending action (not as the user who started its run)."""
    _decide(approval_id, "approve", as_user, comment)


@app.command()
def reject(approval_id: str, as_user: str = typer.Option(..., "--as"),
           reason: str = typer.Option(..., "--reason", help="Goes back to the model.")) -> None:
    """Reject a pending action; the reason goes back to the model."""
    if not reason.strip():
        _fail("--reason must not be empty", 2)
    _decide(approval_id, "reject", as_user, reason)


@app.command()
def up() -> None:
    """Start Temporal, OPA, anvil, the scripted model and a worker (idempotent)."""
    settings = _settings()
    try:
        localstack.up(settings, lambda line: out.print(line, highlight=False))
    except AirlockError as exc:
        _fail(str(exc))


@app.command()
def down() -> None:
    """Stop what `airlock up` started."""
    localstack.down(_settings(), lambda line: out.print(line, highlight=False))


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
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
def worker() -> None:
    """Run a worker in the foreground (for deployments)."""
    from engine.temporal import connect
    from engine.worker import build_worker

    settings = _settings()

    async def go() -> None:
        client = await connect(settings.temporal)
        async with build_worker(client, settings):
            print(f"worker ready on task queue {settings.temporal.task_queue}", flush=True)
            await asyncio.Event().wait()

    run_client_command(go())


@app.command()
def ui() -> None:
    """Serve the web UI and JSON API in the foreground."""
    import uvicorn

    from engine.temporal import connect
    from engine.ui.app import create_app

    settings = _settings()
    web = create_app(settings, engine=_engine(settings), connect=lambda: connect(settings.temporal))
    print(f"ui ready at http://{settings.ui.host}:{settings.ui.port}", flush=True)
    uvicorn.run(web, host=settings.ui.host, port=settings.ui.port, log_level="warning")
    if _process["hard_exit"]:  # same teardown hazard as any Temporal client (see run_client_command)
        sys.stdout.flush()
        os._exit(0)


@app.command()
def demo() -> None:
    """Run the support-refund demo on the local stack (scripted model)."""
    from engine.demo import run_demo

    settings = _settings()

    async def go() -> None:
        try:
            await run_demo(settings, out)
        except AirlockError as exc:
            _fail(str(exc))

    run_client_command(go())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply schema migrations to the configured database."""
    from engine.store.db import migrate

    settings = _settings()
    migrate(settings.db_url)
    out.print(f"database at {settings.db_url.split('@')[-1]} is up to date", highlight=False)


def main_entry() -> None:
    """The ``airlock`` console script."""
    _process["hard_exit"] = True
    app()


if __name__ == "__main__":
    main_entry()
