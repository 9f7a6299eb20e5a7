"""``airlock policy shadow``: what a candidate policy would have decided on recorded traffic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from engine.cli._app import JSON, _database, _fail, _settings, app, out
from engine.cli.terminal import escape
from engine.errors import InputError

if TYPE_CHECKING:
    from engine.boundary.shadow import Candidate, Report
    from engine.config import Settings

policy_app = typer.Typer(help="Policy changes, tried on recorded traffic before they decide.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("shadow")
def shadow(
    policies: Path = typer.Option(..., "--policies", help="The candidate policies folder (as policies/ is)."),
    since: str = typer.Option("7d", "--since", help="Recorded decisions of this window: 90m, 24h, 7d."),
    workflow: str | None = typer.Option(None, "--workflow", "-w", help="Only this workflow's runs."),
    fail_on: list[str] = typer.Option([], "--fail-on", help="Exit 1 when a change of this kind appears: "
                                      "OLD->NEW (allow, require_approval, deny, or *), or any; repeat."),
    shown: int = typer.Option(50, "--show", min=0, help="Changed decisions listed (all with --json)."),
    save: bool = typer.Option(False, "--save", help="Keep the report in the database, for reviewers in the UI "
                              "(/shadow/ID)."),
    label: str | None = typer.Option(None, "--label", help="What the candidate is, as reviewers see it (a branch, "
                                     "a pull request); default: the folder."),
    as_json: bool = JSON,
) -> None:
    """Re-decide every recorded policy input of the window with a candidate policy; print what would change."""
    from engine.boundary.shadow import ShadowError, parse_transitions
    from engine.runtime.shadow import shadow_report
    from engine.store.stats import window

    settings = _settings()
    try:
        forbidden = parse_transitions(fail_on)
        start = datetime.now(UTC) - window(since, "--since")
    except (InputError, ShadowError) as exc:
        _fail(str(exc), 2)
    with open_candidate(settings, policies) as candidate:
        try:
            report = shadow_report(_database(settings), candidate, since=start, workflow=workflow)
        except ShadowError as exc:
            _fail(str(exc), 2)
    failing = report.failing(forbidden)
    saved = None
    if save:
        from engine.store import shadow_reports

        saved = _database(settings).call(
            shadow_reports.save_report, label=(label or str(policies))[:500], revision=report.revision, since=since,
            workflow=workflow, decided=report.decided, same=report.same, reasons_changed=report.reasons_changed,
            transitions=dict(report.transitions), failing=failing, saved_by=_saver(),
            changes=[c.model_dump() for c in report.changes])
    if as_json:
        print(json.dumps(report.as_json() | {"since": since, "workflow": workflow, "failing": failing,
                                             "saved": saved}, default=str))
    else:
        _print_report(report, since, workflow, shown)
        if saved:
            out.print(f"saved as {saved}: {settings.api.url.rstrip('/')}/shadow/{saved}", highlight=False)
        if failing:
            out.print("[red]forbidden changes:[/] " + ", ".join(f"{t} ×{n}" for t, n in failing.items()),
                      highlight=False)
    if failing:
        raise typer.Exit(1)


def open_candidate(settings: Settings, policies: Path) -> Candidate:
    """The candidate policies folder, staged and compiled (``airlock policy shadow`` and ``airlock gate``); exit 2
    saying why it cannot be used (it does not compile, no such folder, no opa)."""
    from engine.boundary.shadow import Candidate, ShadowError
    from engine.local.processes import find_binary

    try:
        return Candidate(find_binary("opa", settings.project_dir), policies, rule=settings.opa.rule)
    except ShadowError as exc:
        _fail(str(exc), 2)
    except Exception as exc:  # noqa: BLE001 - no opa, no such folder: said, with exit 2
        _fail(f"cannot use {policies} as a candidate policy: {exc}", 2)


def _print_report(report: Report, since: str, workflow: str | None, shown: int) -> None:
    from engine.cli import render

    scope = f"workflow {workflow}" if workflow else "all workflows"
    out.print(f"candidate {report.revision}: {report.decided} recorded decision(s) of the last {since} ({scope}) "
              f"re-decided; {report.same} the same ({report.reasons_changed} with other reasons), "
              f"{len(report.changes)} changed", highlight=False)
    if report.failed:
        out.print(f"the candidate fails on {report.failed} recorded input(s) (a conflict or type error at run time): "
                  "read as denials, as the boundary would", highlight=False)
    if report.transitions:
        out.print(render.fitted(out, "Changes by transition", ["transition", "decisions"],
                                [[escape(t), str(n)] for t, n in sorted(report.transitions.items())]))
    rows = [[escape(c.transition), escape(c.run_id), escape(c.tool), escape(json.dumps(c.args, sort_keys=True)),
             escape("; ".join(c.old_reasons)), escape("; ".join(c.new_reasons))] for c in report.changes[:shown]]
    if rows:
        out.print(render.fitted(out, "Changed decisions", ["change", "run", "tool", "arguments", "reasons then",
                                                           "reasons now"], rows))
    if len(report.changes) > shown:
        out.print(f"… and {len(report.changes) - shown} more (--show N, or --json for all)", highlight=False)


def _saver() -> str:
    """Who saved a report, as reviewers see it: the account running the command (the CI job's, in a gate)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"
