"""``airlock init``: start a project of one's own."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from engine.cli._app import JSON, _fail, app, out
from engine.errors import InputError
from engine.local.project import init_project


@app.command()
def init(folder: Path = typer.Argument(..., help="Where the project goes (created if missing; nothing in it is "
                                                 "overwritten)."),
         as_json: bool = JSON) -> None:
    """Write a small working project: a workflow, a tool with facts, a policy with tests, scripted turns."""
    try:
        written = init_project(folder)
    except InputError as exc:
        _fail(str(exc), 2)
    except OSError as exc:  # a file on the way, no permission, a link made meanwhile: said, not a traceback
        _fail(f"cannot write the project into {folder}: {exc.strerror or exc} ({exc.filename})", 2)
    if as_json:
        print(json.dumps({"folder": str(folder.resolve()), "files": [str(p) for p in written]}))
        return
    out.print(f"wrote a project into {folder.resolve()}:", highlight=False)
    for relative in written:
        out.print(f"  {relative}", highlight=False)
    out.print(f"next: cd {folder} && airlock validate workflows/grant_credit.yaml && airlock up "
              "(README.md there says what to run and what to change)", highlight=False)
