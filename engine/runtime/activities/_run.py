"""The run's own bookkeeping and the model: record, guard the input, call the model, validate, the inbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from engine.boundary.arguments import validation_problems
from engine.errors import ModelError
from engine.runtime.activities._base import ActivitiesBase, short_hash
from engine.runtime.activity_io import (
    CallModelInput,
    CallModelResult,
    CloseApprovalInput,
    CloseApprovalResult,
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
from engine.spec import resolve_output_model
from engine.store import repo
from engine.toolkit import import_object


class RunActivities(ActivitiesBase):
    """Activities that record, ask the model and check what it produced."""

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
            "tools": [t.function_schema() for t in spec.tool_specs]})
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
        return await self._validated(request)

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
                       key=f"output:{short_hash(request.content or '')}", kind="output", subject=schema,
                       ok=result.ok, error=result.error)
        return result

    @activity.defn(name="open_approvals")
    async def open_approvals(self, request: OpenApprovalsInput) -> OpenApprovalsResult:
        run = await self._run(request.run_id)
        latest = datetime.now(UTC) + run.spec.approval.timeout  # never longer than the spec allows
        request = request.model_copy(update={"expires_at": min(request.expires_at, latest)})
        return OpenApprovalsResult(opened=await self._db(repo.open_approvals, request=request))

    @activity.defn(name="close_approval")
    async def close_approval(self, request: CloseApprovalInput) -> CloseApprovalResult:
        await self._run(request.run_id)
        await self._db(repo.close_approval, request=request)
        return CloseApprovalResult()
