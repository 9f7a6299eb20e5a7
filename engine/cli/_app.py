"""The ``airlock`` command: the Typer app, settings, and helpers every command uses.

The only place settings are loaded. Exit codes: 0 success, 1 a refused or
failed operation, 2 bad input (spec, ``--input``, arguments): nothing was
started.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from engine.cli.terminal import escape
from engine.config import Settings
from engine.errors import AirlockError, InputError, SpecError
from engine.spec import ResolvedSpec, add_import_roots, load_spec

if TYPE_CHECKING:  # imported where used, so the CLI starts quickly
    from temporalio.client import Client

    from engine.apiclient import ApiClient
    from engine.boundary.identity import Authority
    from engine.store.db import Database
    from engine.store.users import Approver

#: The options of the ``airlock`` command itself, accepted anywhere on the line (``airlock up --project-dir X``).
GLOBAL_OPTIONS = ("--project-dir", "--workflows-dir", "--tools-dir", "--policies-dir")


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the global options (and their values) moved in front of the command, as Click wants them;
    nothing after ``--`` moves."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg.split("=", 1)[0] in GLOBAL_OPTIONS:
            taken = 1 if "=" in arg else 2
            front += args[i:i + taken]
            i += taken
            continue
        rest.append(arg)
        i += 1
    return front + rest


class _AirlockGroup(TyperGroup):
    """The ``airlock`` command group: global options wherever the user types them."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args)))


app = typer.Typer(help="Airlock: agent workflows where the model proposes and a boundary decides.",
                  no_args_is_help=True, add_completion=False, cls=_AirlockGroup)


approvals_app = typer.Typer(help="The approval inbox, across all runs.", no_args_is_help=True)


db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


users_app = typer.Typer(help="Approver accounts and API tokens.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs: what happened, step by step.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(users_app, name="users")
app.add_typer(approvals_app, name="approvals")
app.add_typer(db_app, name="db")


#: The width of output that goes to a pipe or a file: wide enough that nothing is wrapped (a path, an address,
#: a table's row stays on one line for grep and scripts); tables and panels are only as wide as their content.
UNWRAPPED = 100_000


def console(*, stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width on a terminal, and not at all into a pipe or a file (unless
    ``COLUMNS`` says otherwise)."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=UNWRAPPED)


out = console()


err = console(stderr=True)


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
    except AirlockError as exc:  # raised on purpose, with its reason: a message, not a traceback
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        code = exit_code(exc)
    except KeyboardInterrupt:
        code = 130
    from engine.adapters.tracing import flush_all

    flush_all()  # spans of what this command started (tracing on)
    if not _process["hard_exit"]:
        if code:
            raise typer.Exit(code)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.callback()
def main(
    project_dir: Path | None = typer.Option(None, "--project-dir", help="Project root [AIRLOCK_PROJECT_DIR]."),
    workflows_dir: Path | None = typer.Option(None, "--workflows-dir", help="[AIRLOCK_WORKFLOWS_DIR]"),
    tools_dir: Path | None = typer.Option(None, "--tools-dir", help="[AIRLOCK_TOOLS_DIR]"),
    policies_dir: Path | None = typer.Option(None, "--policies-dir", help="[AIRLOCK_POLICIES_DIR]"),
) -> None:
    """Folders default to workflows/, tools/ and policies/ of the current directory."""
    given = {"project_dir": project_dir, "workflows_dir": workflows_dir, "tools_dir": tools_dir,
             "policies_dir": policies_dir}
    _overrides.clear()  # each invocation's own (in one process, tests invoke the app many times)
    _overrides.update({k: v for k, v in given.items() if v is not None})


def _settings() -> Settings:
    settings = Settings(**_overrides)
    add_import_roots(*settings.import_roots)
    return settings


def exit_code(exc: AirlockError) -> int:
    """2 for input the caller can correct (a bad input, spec, setting or name: HTTP 400/422), 1 for the rest
    (a refusal, something missing, a service down)."""
    return 2 if exc.http_status in (400, 422) else 1


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _spec(path: Path, settings: Settings) -> ResolvedSpec:
    if not path.exists() and settings.workflows_dir:  # a bare name: look in the workflows folder
        path = _named(str(path), settings.workflows_dir, settings.project_dir) or path
    try:
        return load_spec(path, project_dir=settings.project_dir)
    except SpecError as exc:
        located_exit(exc)


def located_exit(exc: SpecError) -> NoReturn:
    """Print each problem of a file (a spec, a dataset, a gate file) as ``PATH:LINE: field: message`` and exit 2."""
    for issue in exc.issues:
        print(issue, file=sys.stderr)  # plain: one PATH:LINE line per issue, never wrapped
    raise typer.Exit(2) from exc


def _named(name: str, workflows_dir: Path, project_dir: Path) -> Path | None:
    """The definition a bare name means: a file of that name in the workflows folder (``support_refund``), or
    the one whose ``name:`` it is (``support-refund``). A name that is neither fails listing what there is; a
    path (a ``/`` or a definition's suffix) is left to the loader, which names the missing file."""
    from engine.runtime.definitions import SPEC_SUFFIXES, loadable_specs, spec_file

    found = spec_file(workflows_dir, name)
    if found is not None:
        return found
    known: list[str] = []
    for candidate, spec in loadable_specs(workflows_dir, project_dir):
        if spec.name == name:
            return candidate
        known.append(f"{spec.name} ({candidate.name})")
    if "/" in name or os.sep in name or name.endswith(SPEC_SUFFIXES):
        return None
    there = ", ".join(known) if known else "none"
    _fail(f"no workflow named {name!r} in {workflows_dir}; there are: {there}", 2)


def parse_input(raw: str) -> dict[str, Any]:
    """``--input``: a JSON object, or ``@file`` holding one (limits in ``engine.boundary.inputs``).

    Raises:
        InputError: naming the file, line and column of the problem.
    """
    from engine.boundary.inputs import MAX_INPUT_BYTES, parse_object

    where = "--input"
    if raw.startswith("@"):
        path = Path(raw[1:])
        where = str(path)
        if not path.is_file():
            raise InputError(f"--input: no such file {path}")
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InputError(f"{where}: {path.stat().st_size} bytes; at most {MAX_INPUT_BYTES} are accepted")
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    return parse_object(raw, where)


def _database(settings: Settings) -> Database:
    """The configured database, migrated only if it is behind (the worker and UI migrate when they start)."""
    from engine.store.db import Database

    return Database(settings.db_url).ready()


async def _client(settings: Settings) -> Client:
    from engine.runtime.temporal import connect

    try:
        return await connect(settings.temporal, settings.otel)
    except RuntimeError as exc:
        _fail(f"cannot reach Temporal at {settings.temporal.address}: {exc}. Start the stack with `airlock up`.")


PASSWORD_STDIN = typer.Option(False, "--password-stdin", help="Read --as USER's password from stdin.")
JSON = typer.Option(False, "--json", help="Print one JSON object (a list for several).")


def authenticate(settings: Settings, as_user: str | None, password_stdin: bool) -> Approver:
    """The person running this command, proven: the API token's user, or ``--as USER`` with a password.

    The password comes from stdin (``--password-stdin``) or a prompt on a terminal; nobody acts
    as someone else by naming them.
    """
    from engine.store import users

    db = _database(settings)
    if settings.api.token is not None:
        person = db.call(users.user_for_token, token=settings.api.token.get_secret_value())
        if person is None:
            _fail("AIRLOCK_API__TOKEN is not a valid token")
        if as_user and db.call(users.get_user, name=as_user) != person:
            _fail(f"--as {as_user} does not match the API token's user {person.name}")
        return person
    if not as_user:
        _fail("--as USER is required without an API token (AIRLOCK_API__TOKEN)", 2)
    return proven(settings, f"--as {as_user}", as_user, password_stdin, "", "(or use an API token)")


def proven(settings: Settings, flag: str, name: str, password_stdin: bool, whose: str, elsewhere: str) -> Approver:
    """``name``, proven by their password: the next stdin line (``--password-stdin``) or a prompt on a terminal;
    ``flag`` names the option in messages, ``whose`` the person in the prompt, ``elsewhere`` another way."""
    from engine.store import users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = typer.prompt(f"password for {name}{whose}", hide_input=True)
    else:
        _fail(f"{flag}: give the password with --password-stdin {elsewhere}".rstrip(), 2)
    person = _database(settings).call(users.authenticate, name=name, password=password)
    if person is None:
        _fail(f"{flag}: wrong user name or password")
    return person


def _api(settings: Settings) -> ApiClient | None:
    """The HTTP API client when a token is configured (then the API's rules and identity apply)."""
    if settings.api.token is None:
        return None
    from engine.apiclient import ApiClient

    return ApiClient(settings.api.url, settings.api.token.get_secret_value())


def authority(settings: Settings) -> Authority:
    """The signer of this process's assertions (local mode: the key under the state folder)."""
    from engine.boundary.identity import Authority

    return Authority.from_settings(settings)


def _host() -> str:
    import socket

    return socket.gethostname()


def main_entry() -> None:
    """The ``airlock`` console script."""
    _process["hard_exit"] = True
    for index, arg in enumerate(sys.argv[1:], 1):  # bytes that are not UTF-8 arrive as lone surrogates
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            err.print(f"[red]error:[/] argument {index} is not UTF-8 text (byte {exc.start + 1})", highlight=False)
            sys.exit(2)
    app()
