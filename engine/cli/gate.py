"""``airlock gate``: fail a change to ``policies/`` or a prompt that regresses past the thresholds set.

Two parts, each optional: the shadow evaluation of the candidate policies on
recorded traffic (``airlock policy shadow``'s code, on a database of recorded
decisions: a read replica or a snapshot), and eval datasets run against the
changed version, and the base version when a threshold compares
(``airlock eval``'s code). One summary, one line per threshold; exit 1
naming each one that failed. ``docs/gates.md`` is the CI recipe.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from pydantic import ValidationError

from engine.cli._app import (
    PASSWORD_STDIN,
    _client,
    _database,
    _fail,
    _settings,
    _spec,
    app,
    authority,
    err,
    located_exit,
    out,
    run_client_command,
)
from engine.cli.evals import eval_people
from engine.cli.terminal import escape
from engine.config import Settings, read_secret_file
from engine.errors import SpecError
from engine.gate import Check, EvalGate, GateConfig, ShadowGate, base_version, failed, load_gate, shadow_checks

if TYPE_CHECKING:
    from engine.boundary.shadow import Report
    from engine.evals.dataset import LoadedDataset
    from engine.evals.derive import Derived
    from engine.spec import ResolvedSpec
    from engine.store.users import Approver

CONFIG = "gate.yaml"  # in the project folder: read when --config is not given, if it is there
SHOWN_CHANGES = 20  # forbidden changes listed (run, workflow, tool; never arguments: CI logs travel)


@dataclass
class _Plan:
    """What the gate measures, every input checked before anything runs."""

    shadow: ShadowGate | None = None
    evals: list[_EvalPlan] = field(default_factory=list)


@dataclass
class _EvalPlan:
    gate: EvalGate
    dataset: LoadedDataset
    head: ResolvedSpec
    base: ResolvedSpec | None
    no_base: str | None


@app.command("gate")
def gate_command(
    config: Path | None = typer.Option(None, "--config", help=f"The gate file (default: {CONFIG} in the project "
                                                              "folder, if there is one)."),
    only: str | None = typer.Option(None, "--only", help="Run one part: shadow or evals."),
    policies: Path | None = typer.Option(None, "--policies", help="The candidate policies folder (shadow part)."),
    since: str | None = typer.Option(None, "--since", help="Recorded decisions of this window: 90m, 24h, 7d."),
    workflow: str | None = typer.Option(None, "--workflow", "-w", help="Only this workflow's recorded runs."),
    fail_on: list[str] = typer.Option([], "--fail-on", help="A forbidden transition: OLD->NEW or any (repeat; "
                                                            "replaces the file's)."),
    max_changed: int | None = typer.Option(None, "--max-changed", min=0, help="Changed decisions, at most."),
    max_changed_share: float | None = typer.Option(None, "--max-changed-share", min=0.0, max=1.0,
                                                   help="Share of re-decided decisions changed, at most (0 to 1)."),
    min_decisions: int | None = typer.Option(None, "--min-decisions", min=0,
                                             help="Recorded decisions re-decided, at least (default 1)."),
    recorded_db: str | None = typer.Option(None, "--recorded-db", help="URL of the recorded traffic (a snapshot); "
                                           "default: the configured database."),
    recorded_db_file: Path | None = typer.Option(None, "--recorded-db-file",
                                                 help="A file holding that URL (a replica's credentials: a CI "
                                                      "secret)."),
    datasets: list[Path] = typer.Option([], "--dataset", help="An eval dataset (repeat; replaces the file's)."),
    base_dir: Path | None = typer.Option(None, "--base-dir", help="The base branch's checkout: each version's "
                                         "base is the file at the same place in it."),
    min_success_rate: float | None = typer.Option(None, "--min-success-rate", min=0.0, max=1.0,
                                                  help="Every dataset's success rate, at least (0 to 1)."),
    max_drop: float | None = typer.Option(None, "--max-drop", min=0.0, max=1.0,
                                          help="Success rate lost against the base, at most (0.1: ten points)."),
    max_newly_failing: int | None = typer.Option(None, "--max-newly-failing", min=0,
                                                 help="Cases passing on the base and failing on the change, "
                                                      "at most."),
    as_user: str | None = typer.Option(None, "--as", help="Who starts the eval runs."),
    password_stdin: bool = PASSWORD_STDIN,
    approver: str | None = typer.Option(None, "--approver", help="Who decides the eval runs' approvals."),
    tenant: str = typer.Option("default", help="Tenant the eval runs belong to."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, max=86_400.0, help="Seconds an eval case may take."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run the shadow evaluation and eval datasets a change must pass; exit 1 naming each threshold that failed.

    Thresholds come from gate.yaml (docs/gates.md) and these flags (a flag wins). Exit 2 for a bad gate file,
    flag, candidate policy, dataset or spec: nothing was measured.
    """
    settings = _settings()
    if only not in (None, "shadow", "evals"):
        _fail(f"--only {only!r}: use shadow or evals", 2)
    shadow_flags = {"policies": policies, "since": since, "workflow": workflow, "fail_on": fail_on or None,
                    "max_changed": max_changed, "max_changed_share": max_changed_share,
                    "min_decisions": min_decisions}
    eval_flags = {"min_success_rate": min_success_rate, "max_drop": max_drop, "max_newly_failing": max_newly_failing}
    gate = _merged(_config(config, settings), shadow_flags, datasets, eval_flags, only)
    plan = _Plan(shadow=gate.shadow, evals=[_eval_plan(e, settings, base_dir) for e in gate.evals])
    recorded = _recorded_url(recorded_db, recorded_db_file, settings) if plan.shadow else None
    people = eval_people(settings, as_user, password_stdin, approver, tenant) if plan.evals else None
    result = _Result()
    if plan.shadow is not None and recorded is not None:
        _shadow(plan.shadow, recorded, settings, result)
    if not plan.evals:
        _finish(result, as_json)
    assert people is not None
    run_client_command(_evals(settings, plan.evals, people, tenant, timeout, result, as_json))


def _config(path: Path | None, settings: Settings) -> GateConfig:
    """The gate file given, or the project's ``gate.yaml`` if there is one, or nothing set."""
    if path is None and (settings.project_dir / CONFIG).is_file():
        path = settings.project_dir / CONFIG
    if path is None:
        return GateConfig()
    try:
        return load_gate(path)
    except SpecError as exc:
        located_exit(exc)


_FLAGS = {"since": "--since", "fail_on": "--fail-on", "workflow": "--workflow"}


def _merged(config: GateConfig, shadow_flags: dict[str, Any], datasets: list[Path], eval_flags: dict[str, Any],
            only: str | None) -> GateConfig:
    """The file's thresholds with the flags' in their place (checked as the file's are)."""
    given = {k: v for k, v in shadow_flags.items() if v is not None}
    shadow = config.shadow
    try:
        if given or shadow is not None:
            shadow = ShadowGate.model_validate((shadow.model_dump() if shadow else {}) | given)
        evals = [EvalGate(dataset=d) for d in datasets] if datasets else list(config.evals)
        set_evals = {k: v for k, v in eval_flags.items() if v is not None}
        evals = [EvalGate.model_validate(e.model_dump() | set_evals) for e in evals]
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = str(problem["loc"][0]) if problem["loc"] else "?"
        _fail(f"{_FLAGS.get(name, name)}: {str(problem['msg']).removeprefix('Value error, ')}", 2)
    gate = GateConfig(shadow=shadow, evals=evals)  # a flag's path is the working folder's, as the OS takes it
    if only == "shadow":
        gate = GateConfig(shadow=gate.shadow)
    elif only == "evals":
        gate = GateConfig(evals=gate.evals)
    if gate.shadow is None and not gate.evals:
        _fail(f"nothing to gate: no shadow section or eval dataset (give {CONFIG}, --config, --policies or "
              "--dataset)", 2)
    return gate


def _eval_plan(gate: EvalGate, settings: Settings, base_dir: Path | None) -> _EvalPlan:
    """The dataset, its changed version and its base version (when a threshold compares), all loaded."""
    from engine.cli.evals import _dataset_workflow
    from engine.evals.dataset import load_dataset

    try:
        dataset = load_dataset(gate.dataset)
    except SpecError as exc:
        located_exit(exc)
    head = _spec(Path(gate.workflow or _dataset_workflow(dataset)), settings)
    base, no_base = None, None
    if gate.compares:
        where = gate.base or (base_version(Path(head.source), settings.project_dir, base_dir) if base_dir else None)
        if where is None:
            no_base = ("no base version given (base: in the gate file, or --base-dir)" if base_dir is None
                       else f"{head.source} is not in the project folder, so --base-dir has no file for it")
        elif not where.is_file():
            no_base = f"the base branch has no {where} (a new workflow?)"
        else:
            base = _spec(where, settings)
    return _EvalPlan(gate, dataset, head, base, no_base)


def _recorded_url(url: str | None, file: Path | None, settings: Settings) -> str:
    """Where the recorded decisions are read: ``--recorded-db``, the file ``--recorded-db-file`` names, or the
    configured database. A SQLite file must exist (opening one would create it, empty)."""
    if url and file:
        _fail("give --recorded-db or --recorded-db-file, not both", 2)
    if file is not None:
        try:
            url = read_secret_file(file, "--recorded-db-file")
        except ValueError as exc:
            _fail(str(exc), 2)
    url = url or settings.db_url
    if url.startswith("sqlite") and ":///" in url:
        path = Path(url.split(":///", 1)[1].split("?", 1)[0])
        if not path.is_file():
            _fail(f"the recorded database {path} does not exist", 2)
    return url


@dataclass
class _Result:
    """What was measured, as the summary and ``--json`` give it."""

    checks: list[Check] = field(default_factory=list)
    shadow: dict[str, Any] | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)


def _shadow(gate: ShadowGate, url: str, settings: Settings, result: _Result) -> None:
    """Re-decide the recorded decisions with the candidate; the shadow checks."""
    from engine.boundary.shadow import ShadowError
    from engine.cli.policy import open_candidate
    from engine.redact import redact_text, safe_url
    from engine.runtime.shadow import shadow_report
    from engine.store.db import Database
    from engine.store.stats import window

    candidate = open_candidate(settings, gate.policies)
    start = datetime.now(UTC) - window(gate.since, "since")
    with candidate:
        try:  # never migrated: a replica's credentials are read-only, and a snapshot stays as it was taken
            report = shadow_report(Database(url, read_only=True), candidate, since=start, workflow=gate.workflow)
        except ShadowError as exc:
            _fail(str(exc), 2)
        except Exception as exc:  # noqa: BLE001 - a database error: said without the URL's credentials
            _fail(f"cannot read recorded decisions from {safe_url(url)}: {redact_text(str(exc), url)}")
    result.checks += shadow_checks(gate, decided=report.decided, transitions=report.transitions)
    result.shadow = _shadow_json(gate, report)


def _shadow_json(gate: ShadowGate, report: Report) -> dict[str, Any]:
    """The report's figures, and the changed decisions by run and tool only: arguments and reasons are recorded
    traffic, and CI logs are read by more people than the database is."""
    return {"policies": str(gate.policies), "revision": report.revision, "since": gate.since,
            "workflow": gate.workflow, "decided": report.decided, "same": report.same,
            "changed": len(report.changes), "transitions": dict(sorted(report.transitions.items())),
            "forbidden": report.failing(gate.forbidden),
            "changes": [{"transition": c.transition, "run_id": c.run_id, "workflow": c.workflow, "tool": c.tool}
                        for c in report.changes]}


async def _evals(settings: Settings, plans: list[_EvalPlan], people: tuple[str, Approver | None], tenant: str,
                 timeout: float,
                 result: _Result, as_json: bool) -> None:
    from engine.cli.evals import _one
    from engine.evals.derive import derive
    from engine.evals.runner import EvalContext
    from engine.evals.scoring import difference, summarise
    from engine.gate import eval_checks

    assert settings.workflows_dir is not None
    ctx = EvalContext(client=await _client(settings), db=_database(settings), authority=authority(settings),
                      task_queue=settings.temporal.task_queue, requester=people[0], approver=people[1],
                      tenant=tenant, case_timeout_s=timeout)
    for plan in plans:
        versions = [v for v in (plan.base, plan.head) if v is not None]
        derived: list[Derived] = []
        try:
            for spec in versions:
                derived.append(derive(plan.dataset, spec, settings.workflows_dir, settings.project_dir))
            comparison = f"cmp-{uuid.uuid4().hex[:12]}" if len(derived) > 1 else None
            outcomes = [await _one(ctx, plan.dataset, _label(d.base), d, comparison, as_json)
                        for d in derived]
        except SpecError as exc:
            located_exit(exc)
        finally:
            for d in derived:
                d.remove()
        head = summarise(outcomes[-1].scores)
        base = summarise(outcomes[0].scores) if plan.base is not None else None
        newly = difference(outcomes[0].scores, outcomes[-1].scores).newly_failing if base else None
        result.checks += eval_checks(plan.gate, plan.dataset.name, head, base=base, newly_failing=newly,
                                     no_base=plan.no_base)
        result.evals.append({
            "dataset": plan.dataset.name, "dataset_path": str(plan.dataset.path),
            "head": {"label": _label(plan.head), "eval_id": outcomes[-1].record.eval_id,
                     "summary": head.model_dump(),
                     "failed_cases": [s.case_id for s in outcomes[-1].scores if not s.passed]},
            "base": None if base is None or plan.base is None else {
                "label": _label(plan.base), "eval_id": outcomes[0].record.eval_id,
                "summary": base.model_dump()},
            "newly_failing": newly, "no_base": plan.no_base})
    _finish(result, as_json)


def _label(spec: ResolvedSpec) -> str:
    """A version as the summary names it: its file, relative to where the command runs when it can be."""
    path = Path(spec.source)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _finish(result: _Result, as_json: bool) -> NoReturn:
    """Print the one summary; exit 1 naming each threshold that failed, else 0."""
    bad = failed(result.checks)
    if as_json:
        print(json.dumps({"passed": not bad, "failed": [c.name for c in bad],
                          "checks": [c.as_json() for c in result.checks], "shadow": result.shadow,
                          "evals": result.evals}, default=str))
    else:
        _print_summary(result)
    if bad:
        if not as_json:
            err.print("[red]gate failed:[/] " + "; ".join(escape(f"{c.name} ({c.value}; {c.threshold})")
                                                        for c in bad), highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    raise typer.Exit(0)


def _print_summary(result: _Result) -> None:
    from engine.cli import render

    if (shadow := result.shadow) is not None:
        out.print(f"shadow: candidate {escape(shadow['policies'])} ({shadow['revision']}) re-decided "
                  f"{shadow['decided']} recorded decision(s) of the last {shadow['since']}"
                  f"{' of ' + escape(shadow['workflow']) if shadow['workflow'] else ''}: {shadow['changed']} changed"
                  + (" (" + ", ".join(f"{t} ×{n}" for t, n in shadow["transitions"].items()) + ")"
                     if shadow["transitions"] else ""), highlight=False)
        rows = [[escape(c["transition"]), escape(c["run_id"]), escape(c["workflow"] or "?"), escape(c["tool"])]
                for c in shadow["changes"] if c["transition"] in shadow["forbidden"]]
        if rows:
            out.print(render.fitted(out, "Forbidden changes (arguments: airlock policy shadow, or the run's page)",
                                    ["change", "run", "workflow", "tool"], rows[:SHOWN_CHANGES]))
            if len(rows) > SHOWN_CHANGES:
                out.print(f"… and {len(rows) - SHOWN_CHANGES} more (--json lists all)", highlight=False)
    for e in result.evals:
        head = e["head"]["summary"]
        line = (f"eval {escape(e['dataset'])}: {escape(e['head']['label'])} passed {head['passed']}/{head['cases']}"
                f" ({head['success_rate']:.0%})")
        if e["base"] is not None:
            base = e["base"]["summary"]
            line += f"; base {escape(e['base']['label'])} {base['passed']}/{base['cases']} ({base['success_rate']:.0%})"
        if e["head"]["failed_cases"]:
            line += "; failing: " + escape(", ".join(e["head"]["failed_cases"]))
        out.print(line, highlight=False)
    verdicts = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[yellow]not checked[/]"}
    out.print(render.fitted(out, "Gate", ["check", "threshold", "measured", "result"],
                            [[escape(c.name), escape(c.threshold), escape(c.value), verdicts[c.passed]]
                             for c in result.checks]))
    if not failed(result.checks):
        out.print(f"[green]gate passed:[/] {len(result.checks)} check(s)", highlight=False)
