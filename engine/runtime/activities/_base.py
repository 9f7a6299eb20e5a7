"""What every activity shares: its dependencies, and the run it acts for.

Nothing an activity is sent is taken as authority: the run's definition,
requester and tenant come from what ``resolve_run`` verified and recorded,
only for activities that run itself scheduled; tools are found by name in
that definition.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.adapters.chain_access import ChainAccess
from engine.adapters.llm import ModelClient
from engine.boundary.arguments import check_arguments
from engine.boundary.identity import Verifier
from engine.boundary.policy import OpaPolicy
from engine.errors import AirlockError
from engine.runtime.activity_io import ValidateCallInput, ValidateCallResult
from engine.runtime.definitions import DefinitionRegistry
from engine.runtime.payloads import ResolvedRun
from engine.spec import ResolvedSpec
from engine.store import repo
from engine.store.db import Database
from engine.toolkit import ToolContext, ToolDef, resolve_tool

RUNS_KEPT = 128  # resolved runs an activities object keeps in memory (more than one worker runs at once)
_P = ParamSpec("_P")
_T = TypeVar("_T")


def plain(value: Any) -> Any:
    """A tool result as JSON-safe data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


class ActivitiesBase:
    """Activities built with their dependencies (database, OPA, model client, definitions, verifier)."""

    def __init__(self, *, db: Database, policy: OpaPolicy, model: ModelClient, registry: DefinitionRegistry,
                 verifier: Verifier, chain: ChainAccess | None = None) -> None:
        self._database = db
        self._policy = policy
        self._model = model
        self._chain = chain
        self._registry = registry
        self._verifier = verifier
        self._tools: dict[str, ToolDef] = {}
        # A run's resolved record never changes: the most recently used ones are kept (not every run the
        # worker ever served, or its memory would grow with them).
        self._runs: OrderedDict[str, ResolvedRun] = OrderedDict()

    def _tool(self, import_path: str) -> ToolDef:
        if import_path not in self._tools:
            self._tools[import_path] = resolve_tool(import_path)
        return self._tools[import_path]

    async def _run(self, run_id: str) -> ResolvedRun:
        """The run as ``resolve_run`` recorded it, for an activity that run itself scheduled.

        A run this worker never resolved has no authority, and no other workflow (a rogue one on the
        task queue, or a later run reusing the id) may act for it.
        """
        if run_id not in self._runs:
            found = await self._db(repo.resolved_run, run_id=run_id)
            if found is None:
                raise ApplicationError(f"no run {run_id} was resolved by a worker: nothing is done for it",
                                       type="AuthenticationError", non_retryable=True)
            self._remember(found.model_copy(update={"spec": await self._definition(found.spec)}))
        self._runs.move_to_end(run_id)
        run, info = self._runs[run_id], activity.info()
        if (info.workflow_id, info.workflow_run_id) != (run_id, run.workflow_run_id):
            raise ApplicationError(f"this activity was not scheduled by run {run_id} (it came from workflow "
                                   f"{info.workflow_id}); nothing is done for it", type="AuthenticationError",
                                   non_retryable=True)
        return run

    def _remember(self, run: ResolvedRun) -> None:
        """Keep a resolved run for the activities that follow, forgetting the least recently used."""
        self._runs[run.run_id] = run
        while len(self._runs) > RUNS_KEPT:
            self._runs.popitem(last=False)

    async def _definition(self, recorded: ResolvedSpec) -> ResolvedSpec:
        """A recorded definition with its endpoint keys, from this worker's own copy of it (by hash).

        The record keeps it without them (``spec.shown_spec``); a definition the worker no longer
        has is used as recorded.
        """
        try:
            return await asyncio.to_thread(self._registry.resolve, recorded.name, version=recorded.version,
                                           pin=recorded.definition_hash)
        except AirlockError:
            return recorded

    def _tool_of(self, run: ResolvedRun, name: str) -> ToolDef:
        """A tool of the run's own definition, by the name the model used."""
        spec_tool = run.spec.tool(name)
        if spec_tool is None:
            raise ApplicationError(f"{run.spec.name} v{run.spec.version} has no tool {name!r}",
                                   type="ToolArgumentsError", non_retryable=True)
        try:
            return self._tool(spec_tool.import_path)
        except ValueError as exc:
            raise ApplicationError(f"tool {name}: {exc}", type="DefinitionError", non_retryable=True) from exc

    async def _validated(self, request: ValidateCallInput) -> ValidateCallResult:
        """A proposed call's arguments against the limits and the tool's schema, recorded on the run's
        timeline when it names its step."""
        tool = self._tool_of(await self._run(request.run_id), request.tool)
        result = check_arguments(tool.args_model, request.raw_arguments)
        if request.step is not None:
            await self._db(repo.record_validation, run_id=request.run_id, step=request.step,
                           key=f"{request.call_id}:{short_hash(request.raw_arguments)}", kind="tool_arguments",
                           subject=request.tool, ok=result.ok, error=result.error)
        return result

    async def _db(self, fn: Callable[Concatenate[Any, _P], _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(session, **kwargs)``, a repository function, off the event loop.

        The session is the store's (``Database.call`` checks it); only the store imports SQL.
        """
        return await asyncio.to_thread(self._database.call, fn, *args, **kwargs)

    def _context(self, run: ResolvedRun, step: int, key: str) -> ToolContext:
        return ToolContext(run_id=run.run_id, step=step, idempotency_key=key, database_url=self._database.url,
                           requested_by=run.requested_by, tenant=run.tenant, run_input=run.input,
                           chain_id=run.spec.chain_id).with_chain(self._chain)

    async def _facts(self, tool: ToolDef, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Run a tool's read-only facts function; engine errors keep their type and retryability."""
        assert tool.facts is not None, "callers ask only for the facts of tools that have them"
        try:
            facts = await asyncio.to_thread(tool.facts, tool.args_model.model_validate(args), ctx)
        except AirlockError as exc:
            raise application_error(exc) from exc
        return dict(plain(facts))


def activity_key() -> str:
    """This activity, the same across its retries (a retry may find its own earlier writes)."""
    info = activity.info()
    return f"{info.workflow_run_id}:{info.activity_id}"


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def application_error(exc: AirlockError) -> ApplicationError:
    return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable)
