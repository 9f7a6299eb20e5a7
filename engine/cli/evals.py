"""``airlock eval``: run a dataset of cases against one workflow version, or two side by side."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from engine.cli._app import (
    PASSWORD_STDIN,
    _client,
    _database,
    _fail,
    _settings,
    _spec,
    app,
    authenticate,
    authority,
    err,
    located_exit,
    out,
    proven,
    run_client_command,
)
from engine.cli.terminal import escape
from engine.config import Settings
from engine.errors import SpecError

if TYPE_CHECKING:
    from engine.evals.dataset import LoadedDataset
    from engine.evals.derive import Derived
    from engine.evals.runner import EvalContext, EvalOutcome
    from engine.evals.scoring import CaseScore
    from engine.store.users import Approver


@app.command("eval")
def eval_command(
    dataset_path: Path = typer.Argument(..., metavar="DATASET", help="Eval dataset (YAML, see docs/evals.md)."),
    compare: tuple[str, str] | None = typer.Option(None, "--compare", metavar="V1 V2",
                                                   help="Run the cases against two versions (spec files or "
                                                        "workflow names) side by side."),
    workflow: str | None = typer.Option(None, "--workflow", help="The version to run (a spec file or a name) "
                                                                   "instead of the dataset's workflow."),
    as_user: str | None = typer.Option(None, "--as", help="Who starts the runs (proves it with a password, or "
                                                          "use an API token)."),
    password_stdin: bool = PASSWORD_STDIN,
    approver: str | None = typer.Option(None, "--approver", help="Who decides the runs' approvals as each case "
                                                                 "says (another account, proven by its password: "
                                                                 "the next line of stdin with --password-stdin)."),
    tenant: str = typer.Option("default", help="Tenant the runs belong to."),
    fail_under: float | None = typer.Option(None, "--fail-under", min=0.0, max=1.0,
                                            help="Exit 1 when the success rate (of V2 with --compare) is below "
                                                 "this, 0 to 1."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, max=32, help="Cases run at once."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, max=86_400.0, help="Seconds a case may take."),
    keep: bool = typer.Option(False, "--keep", help="Keep the derived definitions in the workflows folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run an eval dataset against a workflow version (or two, --compare) and print a scored table.

    Results are stored (the UI's stats page shows them). Exit 2 for a bad dataset or spec, 1 when
    --fail-under is given and the success rate is below it.
    """
    from engine.evals.dataset import load_dataset
    from engine.evals.derive import derive

    settings = _settings()
    if compare and workflow:
        _fail("give --workflow or --compare V1 V2, not both", 2)
    try:
        dataset = load_dataset(dataset_path)
    except SpecError as exc:
        located_exit(exc)
    labels = list(compare) if compare else [workflow or _dataset_workflow(dataset)]
    bases = [_spec(Path(label), settings) for label in labels]
    requester, person = eval_people(settings, as_user, password_stdin, approver, tenant)
    assert settings.workflows_dir is not None  # eval_people refused a settings without one
    derived: list[Derived] = []
    try:
        for base in bases:
            derived.append(derive(dataset, base, settings.workflows_dir, settings.project_dir))
    except SpecError as exc:
        for d in derived:
            d.remove()
        located_exit(exc)
    run_client_command(_eval(settings, dataset, list(zip(labels, derived, strict=True)), requester, person,
                             tenant, concurrency, timeout, fail_under, as_json, keep))


def _dataset_workflow(dataset: LoadedDataset) -> str:
    """The dataset's ``workflow:`` as the loader takes it: a spec file (relative to the dataset) or a name."""
    path = dataset.workflow_path()
    return str(path) if path is not None and path.exists() else dataset.data.workflow


def eval_people(settings: Settings, as_user: str | None, password_stdin: bool, approver: str | None,
                tenant: str) -> tuple[str, Approver | None]:
    """Who starts an eval's runs (proven, one of ``tenant``'s) and who decides their approvals (proven), once the
    workflows folder the derived definitions go to is known."""
    if settings.workflows_dir is None:
        _fail("no workflows folder: the worker serves the definitions an eval runs from it (--workflows-dir)", 2)
    requester = authenticate(settings, as_user, password_stdin)
    if tenant not in requester.tenants:
        _fail(f"{requester.name} does not belong to tenant {tenant!r}", 2)
    return requester.name, _approver(settings, approver, password_stdin) if approver else None


def _approver(settings: Settings, name: str, password_stdin: bool) -> Approver:
    """The eval's approver, proven by their password (the next stdin line, or a prompt on a terminal)."""
    return proven(settings, f"--approver {name}", name, password_stdin, " (the eval's approver)",
                  "(after the --as user's)")


async def _eval(settings: Settings, dataset: LoadedDataset, versions: list[tuple[str, Derived]], requester: str,
                approver: Approver | None, tenant: str, concurrency: int, timeout: float, fail_under: float | None,
                as_json: bool, keep: bool) -> None:
    """Run each version in turn; the derived definitions are removed at the end (in here: a console command
    leaves without unwinding, see ``run_client_command``)."""
    from engine.evals.runner import EvalContext

    try:
        ctx = EvalContext(client=await _client(settings), db=_database(settings), authority=authority(settings),
                          task_queue=settings.temporal.task_queue, requester=requester, approver=approver,
                          tenant=tenant, case_timeout_s=timeout, concurrency=concurrency)
        comparison = f"cmp-{uuid.uuid4().hex[:12]}" if len(versions) > 1 else None
        outcomes = [await _one(ctx, dataset, label, derived, comparison, as_json) for label, derived in versions]
    finally:
        for _, derived in versions if not keep else []:
            derived.remove()
    if as_json:
        print(json.dumps(_report(dataset, versions, outcomes), default=str))
    elif len(outcomes) == 1:
        _print_one(outcomes[0])
    else:
        _print_compare(versions, outcomes)
    rate = outcomes[-1].record.success_rate
    if fail_under is not None and rate < fail_under:
        if not as_json:
            err.print(f"success rate {rate:.0%} is below --fail-under {fail_under:.0%}", highlight=False)
        raise typer.Exit(1)


async def _one(ctx: EvalContext, dataset: LoadedDataset, label: str, derived: Derived, comparison: str | None,
               quiet: bool) -> EvalOutcome:
    from engine.evals.runner import run_dataset

    def said(scored: CaseScore) -> None:
        if not quiet:
            err.print(f"{label}: {scored.case_id} {'passed' if scored.passed else 'FAILED'}", highlight=False,
                      markup=False)

    if not quiet:
        err.print(f"{label}: {len(dataset.data.cases)} case(s) of {dataset.name} against {derived.base.name} "
                  f"v{derived.base.version}, run as {derived.spec.name}", highlight=False, markup=False)
    return await run_dataset(ctx, dataset, derived, label=label, comparison=comparison, on_case=said)


def _case_json(scored: CaseScore) -> dict[str, Any]:
    seen = scored.observation
    return {"case_id": scored.case_id, "passed": scored.passed, "failures": scored.failures,
            "run_id": seen.run_id, "status": seen.status, "reason": seen.reason, "cost": seen.cost,
            "latency_ms": seen.latency_ms, "steps": seen.steps, "escalations": seen.escalations,
            "calls": [c.model_dump() for c in seen.calls]}


def _report(dataset: LoadedDataset, versions: list[tuple[str, Derived]],
            outcomes: list[EvalOutcome]) -> dict[str, Any]:
    """The one JSON object of ``--json``: the dataset, each version's figures and cases, and the difference."""
    from engine.evals.scoring import difference, summarise

    report: dict[str, Any] = {"dataset": dataset.name, "dataset_path": str(dataset.path),
                              "dataset_hash": dataset.sha256, "versions": []}
    for (label, derived), outcome in zip(versions, outcomes, strict=True):
        record = outcome.record
        report["versions"].append({
            "label": label, "eval_id": record.eval_id, "workflow": record.workflow, "version": record.version,
            "definition_hash": record.definition_hash, "run_workflow": derived.spec.name,
            "summary": summarise(outcome.scores).model_dump(), "cases": [_case_json(s) for s in outcome.scores]})
    if len(outcomes) == 2:
        report["difference"] = difference(outcomes[0].scores, outcomes[1].scores).model_dump()
    return report


def _verdict(scored: CaseScore) -> str:
    return "[green]pass[/]" if scored.passed else "[red]FAIL[/]"


def _failures(scored: CaseScore) -> str:
    return escape("; ".join(scored.failures)) if scored.failures else ""


def _print_one(outcome: EvalOutcome) -> None:
    record = outcome.record
    table = Table(title=f"{record.dataset} against {record.workflow} v{record.version}", title_justify="left")
    for column in ("case", "result", "status", "tools", "cost", "latency ms", "escalations", "failed expectations"):
        table.add_column(column, overflow="fold")
    for s in outcome.scores:
        seen = s.observation
        tools = ", ".join(f"{c.tool}:{c.outcome}" for c in seen.calls)
        table.add_row(escape(s.case_id), _verdict(s), seen.status, escape(tools), f"{seen.cost:g}",
                      f"{seen.latency_ms:g}", str(seen.escalations), _failures(s))
    out.print(table)
    out.print(_summary_line(outcome), highlight=False)


def _summary_line(outcome: EvalOutcome) -> str:
    r = outcome.record
    per = "–" if r.cost_per_success is None else f"{r.cost_per_success:g}"
    return (f"{r.passed}/{r.cases} passed ({r.success_rate:.0%}), cost {r.cost:g}, cost per successful run {per}, "
            f"{r.escalations} escalation(s); recorded as {r.eval_id}")


def _print_compare(versions: list[tuple[str, Derived]], outcomes: list[EvalOutcome]) -> None:
    from engine.evals.scoring import difference

    (a_label, _), (b_label, _) = versions
    a, b = outcomes
    table = Table(title=f"{a.record.dataset}: {a_label} vs {b_label}", title_justify="left")
    for column in ("case", a_label, b_label, f"failed expectations ({a_label})", f"failed expectations ({b_label})"):
        table.add_column(escape(column), overflow="fold")
    for sa, sb in zip(a.scores, b.scores, strict=True):
        table.add_row(escape(sa.case_id), _verdict(sa), _verdict(sb), _failures(sa), _failures(sb))
    out.print(table)
    diff = difference(a.scores, b.scores)
    figures = Table(title="Figures", title_justify="left")
    for column in ("", a_label, b_label, "difference"):
        figures.add_column(escape(column))
    ra, rb = a.record, b.record
    figures.add_row("success rate", f"{ra.success_rate:.0%}", f"{rb.success_rate:.0%}",
                    f"{diff.success_rate * 100:+.0f} points")
    figures.add_row("cost per successful run", _cost(ra.cost_per_success), _cost(rb.cost_per_success),
                    "–" if diff.cost_per_success is None else f"{diff.cost_per_success:+g}")
    figures.add_row("escalations", str(ra.escalations), str(rb.escalations), f"{diff.escalations:+d}")
    out.print(figures)
    if diff.newly_failing or diff.newly_passing:
        out.print(f"newly failing: {', '.join(diff.newly_failing) or 'none'}; newly passing: "
                  f"{', '.join(diff.newly_passing) or 'none'}", highlight=False, markup=False)
    out.print(f"recorded as {ra.eval_id} and {rb.eval_id}", highlight=False)


def _cost(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"
