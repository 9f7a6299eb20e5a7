"""Activities: the only place the run touches the world (model, OPA, SQL, tools).

Names are pinned so a rename never breaks history. Engine errors become
``ApplicationError`` with ``type`` set to the error class name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.chain_tx import ChainAccess
from engine.errors import AirlockError, ModelError
from engine.llm import ModelClient
from engine.models import (
    CallModelInput,
    CallModelResult,
    CloseApprovalInput,
    CloseApprovalResult,
    EvaluatePolicyInput,
    EvaluatePolicyResult,
    ExecuteToolInput,
    ExecuteToolResult,
    GatherFactsInput,
    GatherFactsResult,
    GuardInputInput,
    GuardInputResult,
    OpenApprovalsInput,
    OpenApprovalsResult,
    RecordRunInput,
    RecordRunResult,
    ValidateCallInput,
    ValidateCallResult,
    ValidateOutputInput,
    ValidateOutputResult,
)
from engine.policy import PolicyEngine
from engine.spec import resolve_output_model
from engine.store import repo
from engine.toolkit import ToolContext, ToolDef, import_object, resolve_tool


HEARTBEAT_EVERY_S = 2.0


def _plain(value: Any) -> Any:
    """A tool result as JSON-safe data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


class AirlockActivities:
    """Activities built with their dependencies (database, OPA, model client)."""

    def __init__(self, *, engine: Engine, database_url: str, policy: PolicyEngine, model: ModelClient,
                 chain: ChainAccess | None = None) -> None:
        self._engine = engine
        self._database_url = database_url
        self._policy = policy
        self._model = model
        self._chain = chain
        self._tools: dict[str, ToolDef] = {}

    def _tool(self, import_path: str) -> ToolDef:
        if import_path not in self._tools:
            self._tools[import_path] = resolve_tool(import_path)
        return self._tools[import_path]

    async def _db(self, fn: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            with Session(self._engine) as session:
                return fn(session, **kwargs)

        return await asyncio.to_thread(run)

    @activity.defn(name="record_run")
    async def record_run(self, record: RecordRunInput) -> RecordRunResult:
        await self._db(repo.record_run, record=record)
        return RecordRunResult()

    @activity.defn(name="call_model")
    async def call_model(self, request: CallModelInput) -> CallModelResult:
        if request.daily_cost_cap is not None:
            spent = await self._db(repo.cost_today, tenant=request.tenant, workflow=request.workflow)
            if spent >= request.daily_cost_cap:
                return CallModelResult(model="", provider_label="", refused=(
                    f"daily cost cap of {request.workflow} for tenant {request.tenant} reached "
                    f"({spent:g} of {request.daily_cost_cap:g})"))
        try:
            result = await self._model.complete(request)
        except ModelError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable) from exc
        await self._db(repo.record_model_call, request=request, result=result)
        if result.fallback_used:
            activity.logger.info("model call %s:%s answered by fallback %s after %s", request.run_id, request.step,
                                 result.provider_label, [a.error for a in result.attempts if a.error])
        return result

    @activity.defn(name="guard_input")
    async def guard_input(self, request: GuardInputInput) -> GuardInputResult:
        """The workflow's input guard: a size limit, then the redaction hook."""
        if request.max_chars is not None and len(request.message) > request.max_chars:
            raise ApplicationError(f"the input is {len(request.message)} characters; this workflow takes at most "
                                   f"{request.max_chars} (input_guard.max_chars)", type="InputError",
                                   non_retryable=True)
        if not request.redact:
            return GuardInputResult(message=request.message)
        redact = import_object(request.redact)
        cleaned = str(await asyncio.to_thread(redact, request.message))
        return GuardInputResult(message=cleaned, redacted=cleaned != request.message)

    @activity.defn(name="validate_tool_call")
    async def validate_tool_call(self, request: ValidateCallInput) -> ValidateCallResult:
        tool = self._tool(request.tool_import_path)
        try:
            args = tool.args_model.model_validate(json.loads(request.raw_arguments or "{}"))
            result = ValidateCallResult(ok=True, args=args.model_dump(mode="json"))
        except json.JSONDecodeError as exc:
            result = ValidateCallResult(ok=False, error=f"arguments are not JSON: {exc.msg} at char {exc.pos}")
        except ValidationError as exc:
            result = ValidateCallResult(ok=False, error=validation_problems(exc, "(arguments)"))
        if request.run_id is not None and request.step is not None:
            await self._db(repo.record_validation, run_id=request.run_id, step=request.step,
                           key=f"{request.call_id}:{_short_hash(request.raw_arguments)}", kind="tool_arguments",
                           subject=request.tool or tool.name, ok=result.ok, error=result.error)
        return result

    @activity.defn(name="validate_output")
    async def validate_output(self, request: ValidateOutputInput) -> ValidateOutputResult:
        """Check a final answer against the workflow's output model (JSON, optionally in a code fence)."""
        try:
            model = resolve_output_model(request.output_schema)
        except ValueError as exc:  # the worker cannot load what the spec named: no repair can fix that
            raise ApplicationError(f"output_schema: {exc}", type="SpecError", non_retryable=True) from exc
        text = (request.content or "").strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            value = model.model_validate_json(text or "null")
            result = ValidateOutputResult(ok=True, value=value.model_dump(mode="json"))
        except ValidationError as exc:
            result = ValidateOutputResult(ok=False, error=validation_problems(exc, "(answer)"))
        await self._db(repo.record_validation, run_id=request.run_id, step=request.step,
                       key=f"output:{_short_hash(request.content or '')}", kind="output", subject=request.output_schema,
                       ok=result.ok, error=result.error)
        return result

    @activity.defn(name="gather_facts")
    async def gather_facts(self, request: GatherFactsInput) -> GatherFactsResult:
        tool = self._tool(request.tool_import_path)
        if tool.facts is None:
            return GatherFactsResult()
        ctx = ToolContext(**request.context, idempotency_key="", database_url=self._database_url)
        return GatherFactsResult(facts=await self._facts(tool, request.args, ctx))

    async def _facts(self, tool: ToolDef, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Run a tool's read-only facts function; engine errors keep their type and retryability."""
        try:
            facts = await asyncio.to_thread(tool.facts, tool.args_model.model_validate(args),  # type: ignore[misc]
                                            ctx.with_chain(self._chain))
        except AirlockError as exc:
            raise _application_error(exc) from exc
        return dict(_plain(facts))

    @activity.defn(name="evaluate_policy")
    async def evaluate_policy(self, request: EvaluatePolicyInput) -> EvaluatePolicyResult:
        decision, raw, latency = await self._policy.decide(request.package, request.document)
        decision_id = f"{request.run_id}:{request.call_id}"
        decision = decision.model_copy(update={"decision_id": decision_id})
        await self._db(repo.save_decision, decision_id=decision_id, run_id=request.run_id,
                       call_id=request.call_id, package=request.package, document=request.document,
                       decision=decision, raw=raw, latency_ms=latency)
        activity.logger.info("policy %s for %s: %s %s", request.package, request.call_id, decision.outcome,
                             decision.reasons)
        return EvaluatePolicyResult(decision=decision)

    @activity.defn(name="open_approvals")
    async def open_approvals(self, request: OpenApprovalsInput) -> OpenApprovalsResult:
        return OpenApprovalsResult(opened=await self._db(repo.open_approvals, request=request))

    @activity.defn(name="close_approval")
    async def close_approval(self, request: CloseApprovalInput) -> CloseApprovalResult:
        await self._db(repo.close_approval, request=request)
        return CloseApprovalResult()

    @activity.defn(name="execute_tool")
    async def execute_tool(self, request: ExecuteToolInput) -> ExecuteToolResult:
        """Run an allowed action once. A retry finds the finished record and returns it."""
        key, call = request.idempotency_key, request.call
        done = await self._db(lambda s, **k: _finished(repo.get_execution(s, **k)), key=key)
        if done is not None:
            return done
        tool = self._tool(request.tool_import_path)
        ctx = ToolContext(run_id=request.run_id, step=call.step, idempotency_key=key,
                          database_url=self._database_url, requested_by=request.requested_by,
                          tenant=request.tenant, run_input=request.run_input,
                          chain_id=request.chain_id).with_chain(self._chain)
        started_before = await self._db(lambda s, **k: repo.get_execution(s, **k) is not None, key=key)
        if tool.facts is not None and call.facts and not started_before:
            # Re-verify right before acting. Skipped on a retry of an execution that already began: its
            # effect may be under way (a transaction sent), and the tool resumes it instead of redoing it.
            changed = _changed(call.facts, await self._facts(tool, call.args, ctx))
            if changed:
                activity.logger.info("facts of %s changed before execution: %s", call.call_id, changed)
                return ExecuteToolResult(ok=False, stale=True, changed=changed,
                                         error=f"facts changed since the decision: {', '.join(changed)}")
        await self._db(repo.start_execution, key=key, run_id=request.run_id, call_id=call.call_id,
                       tool=call.tool, args=call.args)
        started = time.perf_counter()
        try:
            result = _plain(await _heartbeating(tool.func, tool.args_model.model_validate(call.args), ctx))
            ok, error = True, None
        except AirlockError as exc:
            if exc.retryable:  # the node or a store is down: Temporal retries with backoff; the tool resumes
                raise _application_error(exc) from exc
            result, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a tool's own failure is reported to the model, not hidden
            result, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        await self._db(repo.finish_execution, key=key, ok=ok, result=result, error=error,
                       latency_ms=round((time.perf_counter() - started) * 1000, 2))
        return ExecuteToolResult(ok=ok, result=result, error=error)

    def all(self) -> list[Any]:
        """Every activity, for the worker."""
        return [self.record_run, self.guard_input, self.call_model, self.validate_tool_call, self.validate_output,
                self.gather_facts, self.evaluate_policy, self.open_approvals, self.close_approval, self.execute_tool]


def validation_problems(exc: ValidationError, root: str) -> str:
    """``field: message; ...`` for each problem pydantic found (``root`` names the whole value)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in exc.errors())


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


async def _heartbeating(fn: Any, *args: Any) -> Any:
    """Run a blocking tool in a thread, heartbeating so a dead worker's attempt is retried within seconds."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_S)
        if done:
            return task.result()
        activity.heartbeat()


def _application_error(exc: AirlockError) -> ApplicationError:
    return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable)


def _changed(before: dict[str, Any], after: dict[str, Any], path: str = "") -> list[str]:
    """Dotted paths where two fact snapshots differ, ignoring ``volatile`` (nonce, gas, fees, block)."""
    out: list[str] = []
    for key in sorted(set(before) | set(after)):
        if not path and key == "volatile":
            continue
        a, b, where = before.get(key), after.get(key), f"{path}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, where + ".")
        elif a != b:
            out.append(where)
    return out


def _finished(row: Any) -> ExecuteToolResult | None:
    if row is None or row.status == "started":
        return None
    return ExecuteToolResult(ok=row.status == "succeeded", result=row.result, error=row.error, replayed=True)
