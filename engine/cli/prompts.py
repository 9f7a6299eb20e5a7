"""``airlock prompts list / diff``: what the model was told, by workflow version."""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from engine.cli._app import JSON, _database, _fail, _settings, app, out

if TYPE_CHECKING:
    from engine.store.repo import PromptVersion

prompts_app = typer.Typer(help="Prompt versions: the system prompt and tool schemas each workflow version ran with.",
                          no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")


@prompts_app.command("list")
def list_versions(workflow: str = typer.Argument(..., help="Workflow name."), as_json: bool = JSON) -> None:
    """Every recorded prompt version of a workflow."""
    from engine.store import repo

    versions = _database(_settings()).call(repo.prompt_versions, workflow=workflow)
    if not versions:
        _fail(f"no recorded prompt versions of workflow {workflow!r} (they are recorded when a run starts)")
    if as_json:
        print(json.dumps([v.model_dump(mode="json") for v in versions]))
        return
    for v in versions:
        out.print(f"v{v.version}  {v.prompt_hash[:16]}  first run {v.first_seen.isoformat(timespec='seconds')}  "
                  f"{len(v.tools)} tool(s)", highlight=False)


@prompts_app.command("diff")
def diff(workflow: str = typer.Argument(..., help="Workflow name."),
         old: int = typer.Argument(..., help="Older workflow version."),
         new: int = typer.Argument(..., help="Newer workflow version."), as_json: bool = JSON) -> None:
    """What changed in the system prompt and the tool schemas between two workflow versions."""
    from engine.store import repo

    db = _database(_settings())
    found = {v: db.call(repo.prompt_version, workflow=workflow, version=v) for v in (old, new)}
    missing = [str(v) for v, row in found.items() if row is None]
    if missing:
        _fail(f"workflow {workflow!r} has no recorded prompt for version(s) {', '.join(missing)} "
              "(versions are recorded when a run starts)", 2)
    a, b = found[old], found[new]
    assert a is not None and b is not None
    lines = list(difflib.unified_diff(_text(a), _text(b), f"v{old}", f"v{new}", lineterm=""))
    if as_json:
        print(json.dumps({"workflow": workflow, "old": {"version": old, "prompt_hash": a.prompt_hash},
                          "new": {"version": new, "prompt_hash": b.prompt_hash},
                          "changed": a.prompt_hash != b.prompt_hash, "diff": lines}))
        return
    out.print(f"{workflow} v{old} ({a.prompt_hash[:16]}) → v{new} ({b.prompt_hash[:16]})", highlight=False)
    if a.prompt_hash == b.prompt_hash:
        out.print("no change: same system prompt and tool schemas")
        return
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
        out.print(Text(line, style=style), highlight=False)


def _text(version: PromptVersion) -> list[str]:
    lines = ["# system prompt", *version.prompt_text.splitlines()]
    for tool in version.tools:
        lines += [f"# tool {tool['name']}", *json.dumps(tool, indent=2, sort_keys=True).splitlines()]
    return lines
