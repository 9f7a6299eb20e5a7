"""The approval inbox from the command line, and approver accounts.

With ``AIRLOCK_API__TOKEN`` set these go through the JSON API as the token's
user, so scripts obey exactly what the UI obeys; without it they act locally
(Temporal and the database) as ``--as USER``.

``approve``, ``reject`` and ``edit`` exit 0 when the run applied the decision,
3 when no worker took it in time and it was accepted for delivery (it applies
when a worker is back; ``approvals show`` tells when it has, or why not), 1
when it was refused or could not be recorded (then it does not count), 2 for
input to correct.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from engine.boundary.people import rejection_problem
from engine.cli import render
from engine.cli._app import (
    JSON,
    PASSWORD_STDIN,
    _api,
    _client,
    _database,
    _fail,
    _host,
    _settings,
    app,
    approvals_app,
    authenticate,
    authority,
    exit_code,
    out,
    run_client_command,
    users_app,
)
from engine.config import Settings
from engine.errors import AirlockError, InputError
from engine.runtime.payloads import ApprovalDecisionResult
from engine.store.repo import ApprovalView


@approvals_app.command("list")
def approvals_list(
    as_json: bool = typer.Option(False, "--json"),
    all_: bool = typer.Option(False, "--all", help="Include decided and expired items."),
    run_id: str | None = typer.Option(None, "--run", help="Only this run."),
) -> None:
    """Pending approvals across all runs, newest first."""
    from engine.store import repo

    settings = _settings()
    status = None if all_ else "pending"
    if (api := _api(settings)) is not None:
        try:
            items = [i for i in api.inbox(status=status) if run_id in (None, i.run_id)]
        except AirlockError as exc:
            _fail(str(exc))
    else:
        items = _database(settings).call(repo.list_approvals, status=status, run_id=run_id)
    if as_json:
        print(json.dumps([i.model_dump(mode="json") for i in items]))
    elif not items:
        out.print("no pending approvals")
    else:
        out.print(render.approvals_table(out, items))


def _load(settings: Settings, approval_id: str) -> ApprovalView:
    """One approval, through the API with a token, else from the database."""
    from engine.store import repo

    if (api := _api(settings)) is not None:
        try:
            return api.approval(approval_id)
        except AirlockError as exc:
            _fail(str(exc))
    item = _database(settings).call(repo.get_approval, approval_id=approval_id)
    if item is None:
        _fail(f"no approval {approval_id}")
    return item


@approvals_app.command("show")
def approvals_show(approval_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Everything about one gated action."""
    item = _load(_settings(), approval_id)
    if as_json:
        print(item.model_dump_json())
    else:
        out.print(render.approval_panel(item), highlight=False)


def _act(approval_id: str, user: str | None, action: str, comment: str | None,
         args: dict[str, Any] | None = None, password_stdin: bool = False, as_json: bool = False) -> None:
    """Approve, reject or edit: through the API with a token, else locally as ``--as`` (with a password)."""
    from engine.runtime.runs import decide_approval, edit_action

    settings = _settings()
    if (api := _api(settings)) is not None:
        try:
            if user and user != (me := api.me()):
                _fail(f"--as {user} does not match the API token's user {me}")
            digest = api.approval(approval_id).digest
            result = (api.edit(approval_id, args=args or {}, digest=digest, comment=comment) if action == "edit"
                      else api.decide(approval_id, decision=action, digest=digest, comment=comment))
        except AirlockError as exc:
            _fail(str(exc))
        _print_outcome(approval_id, result, as_json)
        return
    approver = authenticate(settings, user, password_stdin)
    db, signer = _database(settings), authority(settings)

    async def go() -> None:
        client = await _client(settings)
        try:
            if action == "edit":
                result = await edit_action(client, db, signer, approval_id=approval_id, approver=approver,
                                           args=args or {}, comment=comment, source=f"cli:{_host()}",
                                           wait_s=settings.temporal.decision_wait_s)
            else:
                result = await decide_approval(client, db, signer, approval_id=approval_id,
                                               decision=action,  # type: ignore[arg-type]
                                               approver=approver, comment=comment, source=f"cli:{_host()}",
                                               wait_s=settings.temporal.decision_wait_s)
        except AirlockError as exc:
            _fail(str(exc), exit_code(exc))
        _print_outcome(approval_id, result, as_json)

    run_client_command(go())


QUEUED_EXIT = 3  # accepted for delivery, not applied yet


def _print_outcome(approval_id: str, result: ApprovalDecisionResult, as_json: bool = False) -> None:
    """How the decision went (one JSON object with ``--json``); a queued one exits ``QUEUED_EXIT`` (the command
    succeeded, the run has not applied it yet)."""
    if as_json:
        print(json.dumps({"approval_id": approval_id, **result.model_dump(mode="json")}))
        if result.status == "queued":
            raise typer.Exit(QUEUED_EXIT)
        return
    if result.status == "queued":
        out.print(f"{approval_id}: queued — {result.detail or 'accepted for delivery'}. It does not count until "
                  f"a worker applies it: `airlock approvals show {approval_id}` shows when it has, or why not.",
                  highlight=False)
        raise typer.Exit(QUEUED_EXIT)
    extra = f" ({result.approvals}/{result.needed} approvals)" if result.status == "pending" else ""
    out.print(f"{approval_id}: {result.status}{extra}", highlight=False)


@users_app.command("add")
def users_add(
    name: str,
    roles: list[str] = typer.Option([], "--role", help="A role the user holds (repeat for several)."),
    tenants: list[str] = typer.Option([], "--tenant", help="A tenant the user belongs to (repeat; default: "
                                                         "default)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    as_json: bool = JSON,
) -> None:
    """Create an account (or reset its password, roles and tenants)."""
    from engine.store import users

    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    try:
        user = _database(_settings()).call(users.add_user, name=name, password=password, roles=roles,
                                           tenants=tenants or None)
    except InputError as exc:
        _fail(str(exc), 2)
    if as_json:
        print(json.dumps(user.model_dump()))
        return
    out.print(f"user {user.name}: roles {', '.join(user.roles) or '(none)'}; tenants {', '.join(user.tenants)}",
              highlight=False)


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Approver accounts and their roles."""
    from engine.store import users

    items = _database(_settings()).call(users.list_users)
    if as_json:
        print(json.dumps([u.model_dump() for u in items]))
        return
    for u in items:
        out.print(f"{u.name:20} roles: {', '.join(u.roles) or '-'}; tenants: {', '.join(u.tenants)}", highlight=False)


@users_app.command("token")
def users_token(name: str, label: str = typer.Option("", "--label")) -> None:
    """Create an API token for a user; it is shown once."""
    from engine.store import users

    try:
        print(_database(_settings()).call(users.create_token, user=name, label=label))
    except InputError as exc:
        _fail(str(exc), 2)


_AS = typer.Option(None, "--as", help="Who decides (local mode); with an API token, the token's user.")


@app.command()
def approve(approval_id: str, as_user: str | None = _AS,
            comment: str | None = typer.Option(None, "--comment"), password_stdin: bool = PASSWORD_STDIN,
            as_json: bool = JSON) -> None:
    """Approve a pending action (not as the user who started its run, nor one who edited it)."""
    _act(approval_id, as_user, "approve", comment, password_stdin=password_stdin, as_json=as_json)


@app.command()
def reject(approval_id: str, as_user: str | None = _AS,
           reason: str = typer.Option(..., "--reason", help="Goes back to the model."),
           password_stdin: bool = PASSWORD_STDIN, as_json: bool = JSON) -> None:
    """Reject a pending action; the reason goes back to the model."""
    if (problem := rejection_problem("reject", reason)) is not None:
        _fail(f"--reason: {problem}", 2)
    _act(approval_id, as_user, "reject", reason, password_stdin=password_stdin, as_json=as_json)


@app.command()
def edit(approval_id: str, as_user: str | None = _AS,
         set_: list[str] = typer.Option(..., "--set", help="NAME=VALUE for an argument to change (repeat)."),
         comment: str | None = typer.Option(None, "--comment"), password_stdin: bool = PASSWORD_STDIN,
         as_json: bool = JSON) -> None:
    """Correct a pending action's arguments; it is checked and decided again."""
    args = dict(_load(_settings(), approval_id).args)
    for item in set_:
        name, sep, value = item.partition("=")
        if not sep or name not in args:
            _fail(f"--set {item}: expected NAME=VALUE with NAME one of {', '.join(args)}", 2)
        args[name] = value
    _act(approval_id, as_user, "edit", comment, args, password_stdin=password_stdin, as_json=as_json)
