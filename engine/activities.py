"""Activities: the only place the run touches the world (model, OPA, SQL, tools).

Names are pinned so a rename never breaks history. Engine errors become
``ApplicationError`` with ``type`` set to the error class name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.boundary import action_digest, approval_id, idempotency_key, policy_document, with_approvers
from engine.boundary.people import decision_refusal
from engine.chain_tx import ChainAccess
from engine.definitions import DefinitionRegistry
from engine.errors import AirlockError, ApprovalError, AuthenticationError, ModelError, ToolArgumentsError
from engine.identity import Verifier, args_hash
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
    GuardInputInput,
    GuardInputResult,
    OpenApprovalsInput,
    OpenApprovalsResult,
    RecordRunInput,
    RecordRunResult,
    ResolvedRun,
    ResolveRunInput,
    ResolveRunResult,
    ToolCallRecord,
    ValidateCallInput,
    ValidateCallResult,
    ValidateOutputInput,
    ValidateOutputResult,
    VerifiedPerson,
    VerifyPersonInput,
)
from engine.policy import PolicyEngine
from engine.spec import resolve_output_model
from engine.store import authority, repo, users
from engine.toolkit import ToolContext, ToolDef, import_object, resolve_tool


HEARTBEAT_EVERY_S = 2.0
# Longer than one attempt of the tool activity (5 min): a dead worker's lease lapses after it.
LOCK_LEASE = timedelta(minutes=6)
LOCK_POLL_S = 0.2


def _plain(value: Any) -> Any:
    """A tool result as JSON-safe data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


class AirlockActivities:
    """Activities built with their dependencies (database, OPA, model client, definitions, verifier).

    Nothing an activity is sent is taken as authority: the run's definition,
    requester and tenant come from what ``resolve_run`` verified and recorded;
    tools are found by name in that definition; people are proven by signed
    assertions; execution asks the store whether exactly this action was
    allowed or approved.
    """

    def __init__(self, *, engine: Engine, database_url: str, policy: PolicyEngine, model: ModelClient,
                 registry: DefinitionRegistry, verifier: Verifier, chain: ChainAccess | None = None) -> None:
        self._engine = engine
        self._database_url = database_url
        self._policy = policy
        self._model = model
        self._chain = chain
        self._registry = registry
        self._verifier = verifier
        self._tools: dict[str, ToolDef] = {}
        self._runs: dict[str, ResolvedRun] = {}  # a run's resolved record never changes

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
            self._runs[run_id] = found
        run, info = self._runs[run_id], activity.info()
        if (info.workflow_id, info.workflow_run_id) != (run_id, run.workflow_run_id):
            raise ApplicationError(f"this activity was not scheduled by run {run_id} (it came from workflow "
                                   f"{info.workflow_id}); nothing is done for it", type="AuthenticationError",
                                   non_retryable=True)
        return run

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

    async def _db(self, fn: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            with Session(self._engine) as session:
                return fn(session, **kwargs)

        return await asyncio.to_thread(run)

    @activity.defn(name="resolve_run")
    async def resolve_run(self, request: ResolveRunInput) -> ResolveRunResult:
        """Verify who starts the run, resolve its definition from this worker's own, and record both."""
        req, info = request.request, activity.info()
        try:
            if info.workflow_id != req.run_id:
                raise AuthenticationError(f"run {req.run_id} can only be resolved by its own workflow")
            claims = self._verifier.verify(req.credential)
            if claims.action != "start" or claims.run_id != req.run_id or claims.workflow != req.workflow:
                raise AuthenticationError(f"the signed assertion is not for starting run {req.run_id} of "
                                          f"{req.workflow}")
            if (claims.input_hash, claims.version, claims.pin) != (args_hash(req.input), req.version,
                                                                   req.definition_hash):
                raise AuthenticationError("the signed assertion is for another input, version or definition pin")
            if (claims.subject, claims.tenant) != (req.requested_by, req.tenant):
                raise AuthenticationError(f"the request says {req.requested_by!r} in tenant {req.tenant!r}; "
                                          f"the signed assertion says {claims.subject!r} in {claims.tenant!r}")
            person = await self._db(users.get_user, name=claims.subject)
            if person is None or person.name != claims.subject:
                raise AuthenticationError(f"no user {claims.subject!r}")
            if claims.tenant not in person.tenants:
                raise AuthenticationError(f"{person.name} does not belong to tenant {claims.tenant!r}")
            spec = await asyncio.to_thread(self._registry.resolve, req.workflow, version=req.version,
                                           pin=req.definition_hash)
            await self._db(authority.use_assertion, jti=claims.jti, run_id=req.run_id, approval_id="",
                           idempotency_key="", digest="", action="start", subject=person.name,
                           roles=person.roles, used_by=_activity_key())
        except AirlockError as exc:
            raise _application_error(exc) from exc
        run = ResolvedRun(run_id=req.run_id, spec=spec, requested_by=person.name, tenant=claims.tenant or "",
                          input=req.input, workflow_run_id=info.workflow_run_id)
        try:
            await self._db(repo.register_run, run=run)
        except AirlockError as exc:
            raise _application_error(exc) from exc
        self._runs[run.run_id] = run
        return ResolveRunResult(run=run)

    @activity.defn(name="verify_person")
    async def verify_person(self, request: VerifyPersonInput) -> VerifiedPerson:
        """Check a person's signed assertion for one decision; roles and tenants come from the user store."""
        run = await self._run(request.run_id)
        try:
            claims = self._verifier.verify(request.assertion)
            bound = (claims.action, claims.run_id, claims.approval_id, claims.digest)
            if bound != (request.action, request.run_id, request.approval_id, request.digest):
                raise AuthenticationError(f"the signed assertion is for {claims.action} of {claims.approval_id} on "
                                          f"{claims.digest}, not {request.action} of {request.approval_id} on "
                                          f"{request.digest}")
            if request.action == "edit" and claims.args_hash != args_hash(request.args or {}):
                raise AuthenticationError("the signed assertion is for other arguments than this edit's")
            decided = await self._db(repo.decision_for_approval, approval_id=request.approval_id)
            if decided is None or decided.run_id != run.run_id or decided.digest != request.digest:
                raise AuthenticationError(f"approval {request.approval_id} on {request.digest} was not asked "
                                          "for by this run's policy")
            person = await self._db(users.get_user, name=claims.subject)
            if person is None or person.name != claims.subject:
                raise AuthenticationError(f"no user {claims.subject!r}")
            if run.tenant not in person.tenants:
                raise AuthenticationError(f"{person.name} does not belong to tenant {run.tenant!r} of this run")
            editors = await self._db(authority.editors_of, idempotency_key=decided.idempotency_key or "")
            refusal = decision_refusal(person=person.name, roles=person.roles, requester=run.requested_by,
                                       editors=editors, approvers=list(decided.result.get("approvers") or []))
            if refusal is not None:  # refused before it is recorded: a refused person leaves no vote behind
                raise ApprovalError(refusal)
            await self._db(authority.use_assertion, jti=claims.jti, run_id=run.run_id,
                           approval_id=request.approval_id, idempotency_key=decided.idempotency_key or "",
                           digest=request.digest, action=request.action, subject=person.name, roles=person.roles,
                           used_by=_activity_key())
        except AirlockError as exc:
            raise _application_error(exc) from exc
        return VerifiedPerson(name=person.name, roles=person.roles, tenants=person.tenants)

    @activity.defn(name="record_run")
    async def record_run(self, record: RecordRunInput) -> RecordRunResult:
        await self._run(record.run_id)
        await self._db(repo.record_run, record=record)
        return RecordRunResult()

    @activity.defn(name="call_model")
    async def call_model(self, request: CallModelInput) -> CallModelResult:
        run = await self._run(request.run_id)
        spec = run.spec
        request = request.model_copy(update={
            "model": spec.model_for(request.step_class or "plan"), "workflow": spec.name, "version": spec.version,
            "tenant": run.tenant, "prompt_hash": spec.prompt_hash, "daily_cost_cap": spec.limits.daily_cost,
            "output_schema": spec.output_json_schema,
            "tools": [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                        "parameters": t.parameters}} for t in spec.tool_specs]})
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
        guard = (await self._run(request.run_id)).spec.input_guard
        if guard is None:
            return GuardInputResult(message=request.message)
        if guard.max_chars is not None and len(request.message) > guard.max_chars:
            raise ApplicationError(f"the input is {len(request.message)} characters; this workflow takes at most "
                                   f"{guard.max_chars} (input_guard.max_chars)", type="InputError",
                                   non_retryable=True)
        if not guard.redact:
            return GuardInputResult(message=request.message)
        redact = import_object(guard.redact)
        cleaned = str(await asyncio.to_thread(redact, request.message))
        return GuardInputResult(message=cleaned, redacted=cleaned != request.message)

    @activity.defn(name="validate_tool_call")
    async def validate_tool_call(self, request: ValidateCallInput) -> ValidateCallResult:
        tool = self._tool_of(await self._run(request.run_id), request.tool)
        try:
            args = tool.args_model.model_validate(json.loads(request.raw_arguments or "{}"))
            result = ValidateCallResult(ok=True, args=args.model_dump(mode="json"))
        except json.JSONDecodeError as exc:
            result = ValidateCallResult(ok=False, error=f"arguments are not JSON: {exc.msg} at char {exc.pos}")
        except ValidationError as exc:
            result = ValidateCallResult(ok=False, error=validation_problems(exc, "(arguments)"))
        if request.step is not None:
            await self._db(repo.record_validation, run_id=request.run_id, step=request.step,
                           key=f"{request.call_id}:{_short_hash(request.raw_arguments)}", kind="tool_arguments",
                           subject=request.tool, ok=result.ok, error=result.error)
        return result

    @activity.defn(name="validate_output")
    async def validate_output(self, request: ValidateOutputInput) -> ValidateOutputResult:
        """Check a final answer against the workflow's output model (JSON, optionally in a code fence)."""
        schema = (await self._run(request.run_id)).spec.output_schema
        if not schema:
            return ValidateOutputResult(ok=True)
        try:
            model = resolve_output_model(schema)
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
                       key=f"output:{_short_hash(request.content or '')}", kind="output", subject=schema,
                       ok=result.ok, error=result.error)
        return result

    def _context(self, run: ResolvedRun, step: int, key: str) -> ToolContext:
        return ToolContext(run_id=run.run_id, step=step, idempotency_key=key, database_url=self._database_url,
                           requested_by=run.requested_by, tenant=run.tenant, run_input=run.input,
                           chain_id=run.spec.chain_id).with_chain(self._chain)

    async def _facts(self, tool: ToolDef, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Run a tool's read-only facts function; engine errors keep their type and retryability."""
        try:
            facts = await asyncio.to_thread(tool.facts, tool.args_model.model_validate(args),  # type: ignore[misc]
                                            ctx)
        except AirlockError as exc:
            raise _application_error(exc) from exc
        return dict(_plain(facts))

    @activity.defn(name="evaluate_policy")
    async def evaluate_policy(self, request: EvaluatePolicyInput) -> EvaluatePolicyResult:
        """Read one call's facts and decide it. The policy input is built here, from the run's record,
        the store and the chain: nothing in it comes from whoever drives the run but the arguments."""
        run, call = await self._run(request.run_id), request.call
        tool = self._tool_of(run, call.tool)
        try:
            args = tool.args_model.model_validate(call.args).model_dump(mode="json")
        except ValidationError as exc:
            raise _application_error(ToolArgumentsError(validation_problems(exc, "(arguments)"))) from exc
        key = idempotency_key(run.run_id, call)
        decided = await self._db(repo.actions_decided, run_id=run.run_id)
        if decided >= run.spec.limits.max_tool_calls and not await self._db(repo.key_decided, key=key):
            raise ApplicationError(f"run {run.run_id} has had {decided} actions decided; the workflow allows "
                                   f"{run.spec.limits.max_tool_calls} (limits.max_tool_calls)",
                                   type="LimitError", non_retryable=True)
        facts = await self._facts(tool, args, self._context(run, call.step, "")) if tool.facts else {}
        call = call.model_copy(update={"args": args, "facts": facts})
        executed = await self._db(repo.executed_calls, run_id=run.run_id)
        document = policy_document(run, call, consequential=tool.consequential, executed=executed)
        decision, raw, latency = await self._policy.decide(run.spec.policy, document)
        decision = with_approvers(decision, run.spec.approval.approver_role)
        decision_id = f"{run.run_id}:{activity.info().activity_id}"
        decision = decision.model_copy(update={"decision_id": decision_id})
        digest = action_digest(call.tool, args, facts, decision.revision)
        approval = approval_id(run.run_id, call) if decision.outcome == "require_approval" else None
        await self._db(repo.save_decision, decision_id=decision_id, run_id=run.run_id, call_id=call.call_id,
                       package=run.spec.policy, document=document, decision=decision, raw=raw, latency_ms=latency,
                       digest=digest, idempotency_key=key, approval_id=approval)
        activity.logger.info("policy %s for %s: %s %s", run.spec.policy, call.call_id, decision.outcome,
                             decision.reasons)
        return EvaluatePolicyResult(decision=decision, digest=digest, facts=facts, approval_id=approval)

    @activity.defn(name="open_approvals")
    async def open_approvals(self, request: OpenApprovalsInput) -> OpenApprovalsResult:
        run = await self._run(request.run_id)
        latest = datetime.now(timezone.utc) + run.spec.approval.timeout  # never longer than the spec allows
        request = request.model_copy(update={"expires_at": min(request.expires_at, latest)})
        return OpenApprovalsResult(opened=await self._db(repo.open_approvals, request=request))

    @activity.defn(name="close_approval")
    async def close_approval(self, request: CloseApprovalInput) -> CloseApprovalResult:
        await self._run(request.run_id)
        await self._db(repo.close_approval, request=request)
        return CloseApprovalResult()

    @activity.defn(name="execute_tool")
    async def execute_tool(self, request: ExecuteToolInput) -> ExecuteToolResult:
        """Run an allowed action once. A retry finds the finished record and returns it."""
        run, call = await self._run(request.run_id), request.call
        tool = self._tool_of(run, call.tool)
        key = idempotency_key(run.run_id, call)
        done = await self._db(lambda s, **k: _finished(repo.get_execution(s, **k)), key=key)
        if done is not None:
            return done
        digest = action_digest(call.tool, call.args, call.facts, call.decision.revision if call.decision else None)
        clearance = await self._db(authority.authority_for, run_id=run.run_id, idempotency_key=key, digest=digest)
        if not clearance.allowed:
            activity.logger.warning("refused to execute %s of %s: %s", call.tool, run.run_id, clearance.reason)
            return ExecuteToolResult(ok=False, refused=True, error=f"not authorised: {clearance.reason}")
        ctx = self._context(run, call.step, key)
        lock = await asyncio.to_thread(tool.serialize, tool.args_model.model_validate(call.args), ctx) \
            if tool.serialize else None
        if lock is None:
            return await self._run_cleared(tool, run.run_id, call, key, digest, ctx)
        holder = _activity_key()
        await self._take_lock(lock, holder)
        # Released when this attempt ends with an answer; kept when it raises, so its retry (the same
        # holder) resumes under the lease and no other action on the account runs in between.
        ran = await self._run_cleared(tool, run.run_id, call, key, digest, ctx)
        await self._db(authority.release_lock, key=lock, holder=holder)
        return ran

    async def _take_lock(self, lock: str, holder: str) -> None:
        """Wait (heartbeating) until this activity holds the lease on what its action touches."""
        while not await self._db(authority.take_lock, key=lock, holder=holder, lease=LOCK_LEASE):
            activity.heartbeat()
            await asyncio.sleep(LOCK_POLL_S)

    async def _run_cleared(self, tool: ToolDef, run_id: str, call: ToolCallRecord, key: str, digest: str,
                           ctx: ToolContext) -> ExecuteToolResult:
        """Re-check the policy revision and the facts, then run the tool once and record how it ended."""
        started_before = await self._db(lambda s, **k: repo.get_execution(s, **k) is not None, key=key)
        revision = call.decision.revision if call.decision else None
        if not started_before and (current := await self._policy.revision()) != revision:
            return ExecuteToolResult(ok=False, stale=True, changed=["policy revision"],
                                     error=f"the policy changed since the decision ({revision} -> {current})")
        if tool.facts is not None and not started_before:
            # Re-verify right before acting. Skipped on a retry of an execution that already began: its
            # effect may be under way (a transaction sent), and the tool resumes it instead of redoing it.
            changed = _changed(call.facts, await self._facts(tool, call.args, ctx))
            if changed:
                activity.logger.info("facts of %s changed before execution: %s", call.call_id, changed)
                return ExecuteToolResult(ok=False, stale=True, changed=changed,
                                         error=f"facts changed since the decision: {', '.join(changed)}")
        try:
            await self._db(repo.start_execution, key=key, run_id=run_id, call_id=call.call_id,
                           tool=call.tool, args=call.args, digest=digest)
        except AirlockError as exc:
            return ExecuteToolResult(ok=False, refused=True, error=f"not authorised: {exc}")
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
        return [self.resolve_run, self.verify_person, self.record_run, self.guard_input, self.call_model,
                self.validate_tool_call, self.validate_output, self.evaluate_policy, self.open_approvals,
                self.close_approval, self.execute_tool]


def validation_problems(exc: ValidationError, root: str) -> str:
    """``field: message; ...`` for each problem pydantic found (``root`` names the whole value)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in exc.errors())


def _activity_key() -> str:
    """This activity, the same across its retries (a retry may find its own earlier writes)."""
    info = activity.info()
    return f"{info.workflow_run_id}:{info.activity_id}"


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
