"""``airlock validate``, ``airlock run`` and ``airlock runs show``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from temporalio.client import WorkflowFailureError

from engine.cli import render
from engine.cli._app import (
    JSON,
    PASSWORD_STDIN,
    _api,
    _client,
    _database,
    _fail,
    _settings,
    _spec,
    app,
    authenticate,
    authority,
    err,
    exit_code,
    out,
    parse_input,
    run_client_command,
    runs_app,
)
from engine.config import Settings
from engine.errors import InputError, SpecError
from engine.present import described, usage_of
from engine.spec import ResolvedSpec, load_spec

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from engine.runtime.payloads import RunResult
    from engine.runtime.workflow import AgentRunWorkflow


@app.command()
def validate(paths: list[Path] = typer.Argument(..., help="Workflow specs (YAML or Python)."),
             as_json: bool = JSON) -> None:
    """Check workflow specs; print PATH:LINE: field: message for each problem (exit 2 when there is one)."""
    settings, failed = _settings(), False
    report: list[dict[str, object]] = []
    for path in paths:
        try:
            spec = load_spec(path, project_dir=settings.project_dir)
            report.append({"path": str(path), "ok": True, "name": spec.name, "version": spec.version,
                           "tools": [t.name for t in spec.tool_specs], "problems": []})
            if not as_json:
                out.print(f"{path}: ok ({spec.name} v{spec.version}, {len(spec.tool_specs)} tools)", highlight=False)
        except SpecError as exc:
            failed = True
            report.append({"path": str(path), "ok": False, "problems": [str(i) for i in exc.issues]})
            if not as_json:
                for issue in exc.issues:
                    print(issue, file=sys.stderr)
    if as_json:
        print(json.dumps(report))
    if failed:
        raise typer.Exit(2)


@app.command()
def run(
    path: Path = typer.Argument(..., help="Workflow spec."),
    input_: str = typer.Option("{}", "--input", help="JSON object, or @file."),
    as_user: str | None = typer.Option(None, "--as", help="Who requests the run (proves it with a password, "
                                                             "or use an API token)."),
    password_stdin: bool = PASSWORD_STDIN,
    tenant: str = typer.Option("default", help="Tenant the run belongs to (one the requester belongs to)."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to end."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Start a durable run of a workflow (the worker runs its own copy of the definition you name)."""
    settings = _settings()
    spec = _spec(path, settings)
    try:
        run_input = parse_input(input_)
    except InputError as exc:
        _fail(str(exc), 2)
    person = authenticate(settings, as_user, password_stdin)
    if tenant not in person.tenants:
        _fail(f"{person.name} does not belong to tenant {tenant!r} (belongs to: {', '.join(person.tenants)})", 2)
    run_client_command(_run(settings, spec, run_input, person.name, tenant, wait, as_json))


async def _run(settings: Settings, spec: ResolvedSpec, run_input: dict[str, Any], user: str, tenant: str,
               wait: bool, as_json: bool) -> None:
    from engine.runtime.runs import start_run

    client = await _client(settings)
    handle = await start_run(client, authority(settings), task_queue=settings.temporal.task_queue, workflow=spec,
                             run_input=run_input, requested_by=user, tenant=tenant)
    if spec.model.provider == "scripted" and not as_json:
        err.print("[dim]model: scripted model (recorded turns, offline)[/]")
    if not wait:
        print(json.dumps({"run_id": handle.id, "status": "running"}) if as_json else f"started run {handle.id}")
        return
    try:
        result = await _await_with_progress(client, handle, quiet=as_json)
    except WorkflowFailureError as exc:  # cancelled, terminated or timed out in Temporal: no result to show
        status, reason = _ended_without_result(exc)
        if as_json:
            print(json.dumps({"run_id": handle.id, "status": status, "reason": reason}))
        else:
            err.print(f"run {handle.id} {status}: {reason}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print(render.result_json(result))
    else:
        render.print_result(out, result)
    if result.status not in ("completed",):
        raise typer.Exit(1)


def _ended_without_result(exc: WorkflowFailureError) -> tuple[str, str]:
    """How a run's workflow ended when it gave no result, in the record's words where it has them."""
    from temporalio.exceptions import CancelledError, TerminatedError, TimeoutError

    cause = exc.cause
    if isinstance(cause, CancelledError):
        return "cancelled", "its workflow was cancelled in Temporal (its approvals closed as expired)"
    if isinstance(cause, TerminatedError):
        return "terminated", f"its workflow was terminated in Temporal ({cause.message or 'no reason given'})"
    if isinstance(cause, TimeoutError):
        return "failed", "its workflow timed out in Temporal"
    return "failed", f"{type(cause).__name__}: {cause}"


async def _await_with_progress(client: Client, handle: WorkflowHandle[AgentRunWorkflow, RunResult], *,
                               quiet: bool) -> RunResult:
    """Wait for the result; meanwhile print the run's progress as it changes (the ``get_progress`` query)."""
    from engine.runtime.runs import run_progress

    task = asyncio.ensure_future(handle.result())
    shown: dict[str, str] = {}
    while not task.done():
        await asyncio.wait([task], timeout=0.5)
        if task.done() or quiet:
            continue
        try:
            lines = render.progress_lines(await run_progress(client, handle.id))
        except Exception:  # noqa: BLE001 - progress is best effort; the result is what counts
            continue
        for topic, line in lines.items():
            if shown.get(topic) != line:
                shown[topic] = line
                err.print(line, highlight=False, markup=False, soft_wrap=True)
    return task.result()


@runs_app.command("cancel")
def cancel(run_id: str = typer.Argument(..., help="The run id (Temporal workflow id)."),
           reason: str = typer.Option(..., "--reason", help="Why (recorded with your name)."),
           as_user: str | None = typer.Option(None, "--as", help="Who cancels (proves it with a password, or use "
                                                                  "an API token)."),
           password_stdin: bool = PASSWORD_STDIN, as_json: bool = JSON) -> None:
    """Cancel a run: its requester may, or a person with one of AIRLOCK_AUTH__CANCEL_ROLES. What waits for people
    expires; what the run already did stays done."""
    from engine.errors import AirlockError
    from engine.runtime.runs import cancel_run

    settings = _settings()

    def done() -> None:
        if as_json:
            print(json.dumps({"run_id": run_id, "status": "cancelling"}))
        else:
            out.print(f"{run_id}: cancelling — `airlock runs show {run_id}` shows it cancelled once the run has "
                      "closed what waits for people", highlight=False)

    if (api := _api(settings)) is not None:
        try:
            if as_user and as_user != (me := api.me()):
                _fail(f"--as {as_user} does not match the API token's user {me}")
            api.cancel(run_id, reason=reason)
        except AirlockError as exc:
            _fail(str(exc), exit_code(exc))
        done()
        return
    person = authenticate(settings, as_user, password_stdin)

    async def go() -> None:
        await cancel_run(await _client(settings), _database(settings), run_id=run_id, person=person, reason=reason,
                         cancel_roles=settings.auth.cancel_roles)
        done()

    run_client_command(go())


@runs_app.command("show")
def show(run_id: str = typer.Argument(..., help="The run id (Temporal workflow id)."),
         as_json: bool = typer.Option(False, "--json", help="Print the run and its timeline as JSON.")) -> None:
    """A run's timeline: model calls, policy decisions, approvals and executions, with latency and cost."""
    from engine.store import repo

    settings = _settings()
    db = _database(settings)
    found = db.call(repo.get_run, run_id=run_id)
    timeline = described(db.call(repo.run_timeline, run_id=run_id))
    if found is None:
        _fail(f"no run {run_id} in {settings.db_url.split('@')[-1]}", 1)
    if as_json:
        print(json.dumps({"run": found.model_dump(mode="json", exclude={"result"}),
                          "usage": usage_of(timeline),
                          "timeline": [e.model_dump(mode="json") for e in timeline]}))
        return
    render.print_timeline(out, found, timeline, temporal_ui=settings.temporal.ui_url(run_id))


@app.command("stats")
def stats_command(since: str = typer.Option("24h", "--since", help="Window: 90m, 24h, 7d."),
                  workflow: str | None = typer.Option(None, "--workflow", "-w", help="Only this workflow."),
                  as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON.")) -> None:
    """Runs by status, success rate, latency per step kind, tokens and cost, denials, approvals, fallbacks."""
    from engine.errors import InputError
    from engine.store.stats import stats, window

    try:
        since_window = window(since, "--since")
    except InputError as exc:
        _fail(str(exc), 2)
    figures = _database(_settings()).call(stats, since=since_window, workflow=workflow)
    if as_json:
        print(json.dumps(figures))
        return
    render.print_stats(out, figures)
