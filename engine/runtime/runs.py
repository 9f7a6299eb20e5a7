"""Client-side operations on runs: start, await, list approvals, decide.

The CLI (and later the HTTP API) call these; they speak Temporal and SQL and
translate Temporal's errors into Airlock's once, here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.workflow import UpdateMethodMultiParam

from engine.boundary.arguments import validation_problems
from engine.boundary.identity import Authority
from engine.boundary.inputs import MAX_ARGUMENT_BYTES, check_document
from engine.boundary.people import rejection_problem
from engine.errors import ApprovalError, AuthenticationError, InputError, NotFoundError, ToolArgumentsError
from engine.runtime.payloads import (
    ApprovalDecisionInput,
    ApprovalDecisionResult,
    ApprovalEditInput,
    PendingAction,
    RunProgress,
    RunRequest,
    RunResult,
)
from engine.runtime.workflow import AgentRunWorkflow
from engine.spec import ResolvedSpec
from engine.store import repo
from engine.store.db import Database
from engine.store.repo import ApprovalView
from engine.store.users import Approver

T = TypeVar("T", bound=BaseModel)


def new_run_id(workflow: str) -> str:
    """A run id that says which workflow it belongs to."""
    return f"{workflow}-{uuid.uuid4().hex[:12]}"


async def start_run(client: Client, authority: Authority, *, task_queue: str, workflow: str | ResolvedSpec,
                    run_input: dict[str, Any], requested_by: str, tenant: str = "default",
                    run_id: str | None = None, version: int | None = None,
                    definition_hash: str | None = None) -> WorkflowHandle[AgentRunWorkflow, RunResult]:
    """Start a durable run as ``requested_by``, a person the caller has authenticated.

    The request names the workflow; the worker resolves its definition. A
    :class:`ResolvedSpec` (what ``load_spec`` returns) pins exactly that
    definition (name, version and content hash). ``authority`` signs the
    requester's assertion, which the worker verifies.
    """
    if isinstance(workflow, ResolvedSpec):
        name, version, definition_hash = workflow.name, workflow.version, workflow.definition_hash
    else:
        name = workflow
    run_id = run_id or new_run_id(name)
    request = RunRequest(workflow=name, version=version, definition_hash=definition_hash, input=run_input,
                         requested_by=requested_by, tenant=tenant, run_id=run_id,
                         credential=authority.start(user=requested_by, run_id=run_id, workflow=name, tenant=tenant,
                                                    run_input=run_input, version=version, pin=definition_hash))
    # The result type (RunResult) comes from the run method's annotation.
    return await client.start_workflow(AgentRunWorkflow.run, request.model_dump(mode="json"), id=run_id,
                                       task_queue=task_queue, memo={"workflow": name, "requested_by": requested_by})


async def run_progress(client: Client, run_id: str) -> RunProgress:
    """Ask a run where it is: step, what it is doing, who it waits for (Temporal query)."""
    handle = client.get_workflow_handle_for(AgentRunWorkflow.run, run_id)
    return await handle.query(AgentRunWorkflow.get_progress)


async def pending_actions(client: Client, run_id: str) -> list[PendingAction]:
    """Ask a run which of its actions wait for people (Temporal query)."""
    handle = client.get_workflow_handle_for(AgentRunWorkflow.run, run_id)
    return await handle.query(AgentRunWorkflow.get_pending_actions)


async def decide_approval(client: Client, db: Database, authority: Authority, *, approval_id: str,
                          decision: Literal["approve", "reject"], approver: Approver, comment: str | None = None,
                          digest: str | None = None, source: str | None = None) -> ApprovalDecisionResult:
    """Approve or reject a gated action, across all runs, as ``approver`` (authenticated by the caller).

    ``authority`` signs the person's assertion bound to this approval, digest
    and decision; the run verifies it and enforces the rules (requester,
    editors, role, quorum, digest, expiry, decided once). ``digest`` is what
    the person was shown; None means the inbox row's.

    Raises:
        NotFoundError: no approval has this id.
        ApprovalError: the run refused the decision.
        AuthenticationError: the run could not verify who decided.
    """
    if (problem := rejection_problem(decision, comment)) is not None:
        raise InputError(problem)
    approval, handle = _pending(client, db, approval_id)
    digest = digest or approval.digest
    assertion = authority.decide(user=approver.name, run_id=approval.run_id, approval_id=approval_id,
                                 digest=digest, action=decision)
    return await _update(handle, approval.run_id, AgentRunWorkflow.decide_approval, _payload(
        ApprovalDecisionInput, approval_id=approval_id, decision=decision, digest=digest, assertion=assertion,
        comment=comment, source=source))


async def edit_action(client: Client, db: Database, authority: Authority, *, approval_id: str,
                      approver: Approver, args: dict[str, Any], digest: str | None = None,
                      comment: str | None = None, source: str | None = None) -> ApprovalDecisionResult:
    """Correct a gated action's arguments; it goes through validation, facts and policy again.

    Raises:
        NotFoundError: no approval has this id.
        ApprovalError: the run refused the edit (same rules as a decision).
        AuthenticationError: the run could not verify who edited.
        ToolArgumentsError: the edited arguments do not fit the tool's schema.
    """
    check_document(args, "args", MAX_ARGUMENT_BYTES)
    approval, handle = _pending(client, db, approval_id)
    digest = digest or approval.digest
    assertion = authority.decide(user=approver.name, run_id=approval.run_id, approval_id=approval_id,
                                 digest=digest, action="edit", args=args)
    return await _update(handle, approval.run_id, AgentRunWorkflow.edit_action, _payload(
        ApprovalEditInput, approval_id=approval_id, digest=digest, args=args, assertion=assertion, comment=comment,
        source=source))


def _payload(model: type[T], **fields: Any) -> T:
    """A decision's payload, or an ``InputError`` naming the field (a comment too long, say)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, "(decision)")) from None


def _pending(client: Client, db: Database,
             approval_id: str) -> tuple[ApprovalView, WorkflowHandle[AgentRunWorkflow, RunResult]]:
    approval = db.call(repo.get_approval, approval_id=approval_id)
    if approval is None:
        raise NotFoundError(f"no approval {approval_id}")
    if approval.status != "pending":
        raise ApprovalError(f"approval {approval_id} is already {approval.status}")
    return approval, client.get_workflow_handle_for(AgentRunWorkflow.run, approval.run_id)


_ERRORS = {"NotFoundError": NotFoundError, "ToolArgumentsError": ToolArgumentsError,
           "AuthenticationError": AuthenticationError}


async def _update(handle: WorkflowHandle[AgentRunWorkflow, RunResult], run_id: str,
                  update: UpdateMethodMultiParam[[AgentRunWorkflow, T], Awaitable[ApprovalDecisionResult]],
                  payload: T) -> ApprovalDecisionResult:
    try:
        # temporalio types an async handler under ``@workflow.update(name=...)`` as returning its awaitable;
        # what the update answers is the awaited value, decoded with the handler's return type.
        return cast(ApprovalDecisionResult, await handle.execute_update(update, payload))
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        kind = cause.type if isinstance(cause, ApplicationError) else None
        raise _ERRORS.get(kind or "", ApprovalError)(message) from exc
    except RPCError as exc:
        raise ApprovalError(f"run {run_id} cannot take decisions now: {exc.message}") from exc
