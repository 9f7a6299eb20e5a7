"""How runs and approvals look in a terminal (Rich) and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from engine.cli.terminal import escape
from engine.present import TimelineLine, args_summary, origin_of, usage_of, waited
from engine.runtime.payloads import RunProgress, RunResult, ToolCallRecord
from engine.store.repo import ApprovalView, RunView

_OUTCOME_STYLE = {"executed": "green", "denied": "red", "invalid": "yellow", "rejected": "red",
                  "expired": "red", "failed": "red", "pending_approval": "cyan", "allowed": "green",
                  "approved": "green"}


def progress_lines(progress: RunProgress) -> dict[str, str]:
    """What ``run --wait`` prints about a run's progress: one line per topic (the run, each gated action).

    A topic's line is printed again only when its text changes.
    """
    usage = progress.usage or {}
    doing = progress.activity
    if doing == "calling the model" and progress.model:
        doing = f"calling {progress.model}" + (f" ({progress.step_class} step)" if progress.step_class else "")
    line = f"step {progress.step}: {doing}" if progress.step else doing
    if usage.get("model_calls"):
        line += (f" · {usage['model_calls']} model call(s), {usage.get('tokens', 0)} tokens, "
                 f"cost {usage.get('cost', 0):g}")
    lines = {"run": line}
    for w in progress.waiting:
        who = ", ".join(w.approvers) or "any approver"
        line = (f"waiting for approval {w.approval_id}: {w.tool}({args_summary(w.args)}) — {'; '.join(w.reasons)}. "
                f"Needs {w.needed} approval(s) from {who}; {len(w.approved_by)}/{w.needed} so far"
                + (f" ({', '.join(w.approved_by)})" if w.approved_by else "")
                + f". Approve with `airlock approve {w.approval_id} --as USER`.")
        lines[w.approval_id] = line
    return lines


def call_json(call: ToolCallRecord) -> dict[str, Any]:
    """One tool call as the ``--json`` output shows it."""
    return {
        "step": call.step, "tool": call.tool, "args": call.args,
        "decision": call.decision.outcome if call.decision else None,
        "reasons": call.decision.reasons if call.decision else [],
        "policy_revision": call.decision.revision if call.decision else None,
        "outcome": call.outcome, "error": call.error, "result": call.result,
        "approval_id": call.approval_id,
        "approved_by": [v.by for v in call.votes if v.decision == "approve"],
        "edited_by": call.edited_by,
    }


def result_json(result: RunResult) -> str:
    """The single JSON object of ``airlock run --wait --json``."""
    return json.dumps({"run_id": result.run_id, "workflow": result.workflow, "version": result.version,
                       "status": result.status, "reason": result.reason, "output": result.output,
                       "steps": result.steps, "tool_calls": [call_json(c) for c in result.tool_calls]},
                      default=str)


def fitted(console: Console, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> RenderableType:
    """A table when each row fits the console on one line; otherwise one record per block ("column: value"
    lines), so long addresses and hashes are never folded into narrow columns. Cells are Rich markup (escape
    what a user or a model wrote)."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    natural = console.measure(table, options=console.options.update(max_width=1_000_000)).maximum
    if not rows or natural <= console.width:
        return table
    blocks: list[RenderableType] = [f"[italic]{escape(title)}[/]"]
    for row in rows:
        blocks.append("\n".join(f"[dim]{escape(col)}:[/] {cell}" for col, cell in zip(columns, row, strict=True))
                      + "\n")
    return Group(*blocks)


def calls_table(console: Console, calls: list[ToolCallRecord], title: str = "Tool calls") -> RenderableType:
    """The proposed calls: what the model asked, what the boundary did."""
    rows = []
    for c in calls:
        why = "; ".join(c.decision.reasons) if c.decision else (c.error or "")
        if c.votes:
            why += " | " + ", ".join(f"{v.decision}d by {v.by}" for v in c.votes)
        style = _OUTCOME_STYLE.get(c.outcome, "")
        rows.append([str(c.step), escape(c.tool), escape(args_summary(c.args or {"raw": c.raw_arguments})),
                     c.decision.outcome if c.decision else "-", f"[{style}]{c.outcome}[/]", escape(why)])
    return fitted(console, title, ("step", "tool", "arguments", "policy", "outcome", "why"), rows)


def print_result(console: Console, result: RunResult) -> None:
    """A run's outcome, readable."""
    style = "green" if result.status == "completed" else "yellow"
    console.print(f"run [bold]{result.run_id}[/] ({result.workflow} v{result.version}): "
                  f"[{style}]{result.status}[/]" + (f" — {escape(result.reason)}" if result.reason else ""))
    if result.tool_calls:
        console.print(calls_table(console, result.tool_calls))
    if result.output:
        console.print(f"[bold]final answer:[/] {escape(result.output)}")


def simulation_lines(facts: dict[str, Any]) -> list[str]:
    """The simulated transaction of a chain action, as lines for a terminal."""
    sim = facts.get("simulation")
    if not isinstance(sim, dict):
        return []
    method = escape(str(sim.get("method")))  # a contract, a token or a node wrote these: text, never markup
    head = (f"simulation ({method}): [green]succeeds[/], gas {escape(str(sim.get('gas_used')))}" if sim.get("ok")
            else f"simulation ({method}): [red]reverts: {escape(str(sim.get('revert_reason')))}[/]")
    return [head, *(escape(f"  {c['account']} {c['asset']}: {c['before']} → {c['after']} ({c['delta']})")
                    for c in sim.get("balance_changes") or [])]


def argument_lines(key: str, value: Any, provenance: dict[str, Any]) -> list[str]:
    """An argument and where it came from (untrusted sources in red; everything shown escaped: an argument or
    a source's text is written by the model or a third party, never markup)."""
    lines = [f"  {escape(key)}: [bold]{escape(str(value))}[/]"]
    origin = origin_of(provenance, key)
    if origin is None:
        return lines
    if origin["made_up"]:
        return [*lines, "    [red]found nowhere the run has seen: the model made it up[/]"]
    if not origin["trusted"]:
        lines.append("    [red]only from untrusted content[/]")
    for s in origin["sources"]:
        where = escape(s["from"] + (f" · {s['field']}" if s["field"] else ""))
        shown = f"from {where}: “{escape(s['context'])}”"
        lines.append(f"    {shown}" if s["trusted"] else f"    [red]{shown} (untrusted)[/]")
    if origin["more"]:
        lines.append(f"    and {origin['more']} more")
    return lines


def approval_panel(item: ApprovalView) -> Panel:
    """One gated action with everything needed to decide it (what the model, the policy or people wrote is
    escaped: shown as written, never read as markup that could hide the rest)."""
    lines = [f"[bold]{escape(item.tool)}[/] in {escape(f'{item.workflow} v{item.version}, run {item.run_id}')}",
             *(line for k, v in item.args.items() for line in argument_lines(k, v, item.provenance)),
             escape(f"requested by: {item.requested_by} (tenant {item.tenant})"),
             escape(f"model's reason: {item.model_reason or '-'}"),
             *simulation_lines(item.facts),
             escape(f"policy: {'; '.join(item.policy_reasons)}"),
             escape(f"approvers: {', '.join(item.approvers) or '-'} (need {item.min_approvals})"),
             escape(f"policy revision: {item.policy_revision}"),
             escape(f"action digest: {item.digest}"),
             f"expires: {item.expires_at.isoformat(timespec='minutes')}",
             *queued_lines(item)]
    return Panel("\n".join(lines), title=escape(f"approval {item.approval_id} — {item.status}"), title_align="left",
                 expand=False)


def queued_lines(item: ApprovalView) -> list[str]:
    """Decisions sent while no worker was there, and what became of each."""
    lines = []
    for q in item.queued:
        when = q.queued_at.strftime("%Y-%m-%d %H:%M:%S")
        if q.waiting:
            what = "[yellow]waiting for a worker[/]: it applies when one is back"
        elif q.status == "applied":
            what = f"[green]applied[/] ({escape(q.result or 'done')})"
        else:
            what = f"[red]{q.status}[/], it does not count: {escape(q.reason or '')}"
        lines.append(f"queued decision: {escape(q.by)} {q.action} at {when} UTC — {what}")
    return lines


def status_text(item: ApprovalView) -> str:
    """An inbox item's status, with the decisions that wait for a worker."""
    waiting = item.waiting
    if not waiting:
        return item.status
    return f"{item.status} ({len(waiting)} decision(s) waiting for a worker: {', '.join(q.by for q in waiting)})"


def approvals_table(console: Console, items: list[ApprovalView]) -> RenderableType:
    """The inbox (every value escaped: arguments are the model's text)."""
    rows = [[escape(str(cell)) for cell in (
        a.approval_id, f"{a.workflow} v{a.version}", a.requested_by, a.tool, args_summary(a.args),
        "; ".join(a.policy_reasons), waited(a.created_at), a.expires_at.isoformat(timespec="minutes"),
        status_text(a))] for a in items]
    return fitted(console, "Approvals", ("id", "workflow", "requested by", "tool", "arguments", "policy reasons",
                                         "waited", "expires", "status"), rows)


_KIND_STYLE = {"model": "blue", "validation": "yellow", "policy": "magenta", "approval": "cyan", "execution": "green",
               "run": "bold"}


def print_timeline(console: Console, run: RunView, timeline: list[TimelineLine], temporal_ui: str) -> None:
    """``airlock runs show``: the run, then every recorded step in order."""
    style = "green" if run.status == "completed" else "yellow"
    console.print(f"run [bold]{run.run_id}[/] ({run.workflow} v{run.version}) by {run.requested_by}, tenant "
                  f"{run.tenant}: [{style}]{run.status}[/]" + (f" — {escape(run.reason)}" if run.reason else ""),
                  highlight=False)
    console.print(f"Temporal UI: {temporal_ui}", highlight=False)
    rows = [[e.at.strftime("%H:%M:%S.%f")[:-3], "" if e.step is None else str(e.step),
             f"[{_KIND_STYLE.get(e.kind, 'default')}]{e.kind}[/]",
             "" if e.latency_ms is None else f"{e.latency_ms:.0f}", escape(e.summary)] for e in timeline]
    console.print(fitted(console, "Timeline", ("time", "step", "kind", "ms", "what happened"), rows))
    usage = usage_of(timeline)
    console.print(f"model calls {usage['model_calls']}, tokens {usage['input_tokens']} in / {usage['output_tokens']} "
                  f"out, cost {usage['cost']:g}, fallbacks {usage['fallbacks']}", highlight=False)
    if run.output:
        console.print(f"[bold]final answer:[/] {escape(run.output)}")


def _shown(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f}%" if percent else f"{value:g}" if isinstance(value, float) else str(value)


def print_stats(console: Console, figures: dict[str, Any]) -> None:
    """``airlock stats``: a summary line, latency per step kind, then model, boundary and policy lines."""
    runs, model, boundary = figures["runs"], figures["model"], figures["boundary"]
    console.print(f"since {figures['since']}" + (f", workflow {figures['workflow']}" if figures["workflow"] else "")
                  + f": {runs['total']} run(s), " + ", ".join(f"{n} {s}" for s, n in runs["by_status"].items())
                  + f"; success rate {_shown(runs['success_rate'], True)}", highlight=False)
    latency = Table(title="Latency per step (ms)", title_justify="left")
    for column in ("step", "count", "p50", "p95"):
        latency.add_column(column)
    for kind, row in figures["latency_ms"].items():
        latency.add_row(kind, str(row["count"]), _shown(row["p50"]), _shown(row["p95"]))
    console.print(latency)
    console.print(f"model: {model['calls']} call(s), {model['tokens']} tokens, cost {_shown(model['cost'])} "
                  f"(per run {_shown(model['cost_per_run'])}, per successful run "
                  f"{_shown(model['cost_per_successful_run'])}), tokens per run {_shown(model['tokens_per_run'])}, "
                  f"fallback rate {_shown(model['fallback_rate'], True)}", highlight=False)
    console.print(f"boundary: {boundary['decisions']} decision(s), denial rate "
                  f"{_shown(boundary['denial_rate'], True)}, approval rate {_shown(boundary['approval_rate'], True)}, "
                  f"{boundary['escalations']} escalation(s): "
                  + (", ".join(f"{n} {s}" for s, n in boundary["approvals"].items()) or ""), highlight=False)
    console.print(f"policy: OPA asked again {boundary['policy_retries']} time(s) in {boundary['retried_decisions']} "
                  f"decision(s), {boundary['policy_unavailable']} denied as policy unavailable", highlight=False)
    shadow = figures["shadow"]
    if shadow["decisions"]:
        console.print(f"shadow policy ({', '.join(shadow['packages'])}): {shadow['decisions']} decision(s), "
                      f"{shadow['disagreements']} disagreement(s)"
                      + "".join(f", {t} {n}" for t, n in shadow["by_transition"].items()), highlight=False)
