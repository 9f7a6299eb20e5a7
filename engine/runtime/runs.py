"""Client-side operations on runs: start, await, list approvals, decide.

The CLI, the pages and the JSON API call these; they speak Temporal and SQL
and translate Temporal's errors into Airlock's once, here.

A decision (approve, reject, edit) is first offered to the run as an update,
for at most ``wait_s`` seconds (``AIRLOCK_TEMPORAL__DECISION_WAIT_S``): a
worker that takes it answers how the approval stands. Temporal keeps an update
no worker has taken only in memory, where it may be lost or applied much
later, so when none takes it in time the same signed decision is recorded as
queued (``queued_decisions``) and sent as a signal, which Temporal writes to
the run's history at once; the answer is then ``queued``: accepted for
delivery, it applies when a worker is back, and the approval shows when it
has, or why not. The run counts a decision once however it arrives. If even
the signal cannot be confirmed, the queued record is withdrawn (a worker that
gets it later refuses it) and the person is told it did not count, unless a
worker has it already: a worker records every decision it verifies under the
same key before counting it, so a withdrawal fails for one the run took (even
by the late update) and the record says how that went.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.types import MethodSyncOrAsyncSingleParam
from temporalio.workflow import UpdateMethodMultiParam

from engine.boundary.arguments import validation_problems
from engine.boundary.identity import Authority
from engine.boundary.inputs import MAX_ARGUMENT_BYTES, check_document, hidden_characters
from engine.boundary.people import rejection_problem
from engine.errors import (
    AccessDeniedError,
    ApprovalError,
    AuthenticationError,
    InputError,
    NotFoundError,
    RunEndedError,
    StackError,
    ToolArgumentsError,
)
from engine.runtime.payloads import (
    ApprovalDecisionInput,
    ApprovalDecisionResult,
    ApprovalEditInput,
    PendingAction,
    RunProgress,
    RunRequest,
    RunResult,
    decision_key,
)
from engine.runtime.workflow import AgentRunWorkflow
from engine.spec import ResolvedSpec
from engine.store import repo
from engine.store.db import Database
from engine.store.repo import ApprovalView, QueuedDecision, RunView
from engine.store.users import Approver

T = TypeVar("T", bound=BaseModel)
DECISION_WAIT_S = 5.0  # how long a decision waits for a worker to take it before it is queued for delivery


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


ENDED = ("completed", "limit_reached", "failed", "cancelled")  # a run's statuses once it has ended
MAX_CANCEL_REASON = 500


def may_cancel(person: Approver, run: RunView, cancel_roles: list[str] | tuple[str, ...]) -> bool:
    """Whether ``person`` may cancel ``run`` (of one of their tenants): its requester, or one of ``cancel_roles``."""
    return person.name == run.requested_by or bool(set(person.roles) & set(cancel_roles))


async def cancel_run(client: Client, db: Database, *, run_id: str, person: Approver, reason: str,
                     cancel_roles: list[str] | tuple[str, ...] = ()) -> RunView:
    """Ask a run to cancel, for ``person`` (whom the caller has authenticated): the run's requester, or someone
    with one of ``cancel_roles``, in the run's tenant. The run closes what waits for people (expired, with the
    reason) and is recorded ``cancelled: <person> cancelled it: <reason>``; what it already did stays done.

    The reason travels as Temporal's cancellation reason: anyone with access to Temporal can cancel a run (as
    they can terminate one) and word that reason, so guard Temporal as the workers' own infrastructure.

    Raises:
        InputError: no reason, or one over ``MAX_CANCEL_REASON`` characters.
        NotFoundError: no such run in the person's tenants (another tenant's runs are not confirmed to exist).
        AccessDeniedError: the person may not cancel it.
        RunEndedError: it has ended.
    """
    text = " ".join(reason.split())  # one line: it is shown in tables and logs
    if not text:
        raise InputError("reason: say why the run is cancelled")
    if hidden := hidden_characters(text):
        raise InputError(f"reason: control or invisible characters are not accepted ({', '.join(hidden)})")
    if len(text) > MAX_CANCEL_REASON:
        raise InputError(f"reason: at most {MAX_CANCEL_REASON} characters (got {len(text)})")
    run = await asyncio.to_thread(db.call, repo.get_run, run_id=run_id)
    if run is None or run.tenant not in person.tenants:
        raise NotFoundError(f"no run {run_id} (a run appears once its worker has started it)")
    if not may_cancel(person, run, cancel_roles):
        also = f", or a person with one of the roles {', '.join(cancel_roles)}" if cancel_roles else ""
        raise AccessDeniedError(f"{person.name} may not cancel run {run_id}: only {run.requested_by}, who started "
                                f"it{also}")
    if run.status in ENDED:
        raise RunEndedError(f"run {run_id} has ended ({run.status}): there is nothing to cancel")
    try:
        await client.get_workflow_handle(run_id).cancel(reason=f"{person.name} cancelled it: {text}")
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # it ended after the store was read
            raise RunEndedError(f"run {run_id} has ended: there is nothing to cancel") from None
        raise StackError(f"run {run_id} was not cancelled: Temporal did not take the request ({exc.message}); "
                         "try again") from exc
    return run


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
                          digest: str | None = None, source: str | None = None,
                          wait_s: float = DECISION_WAIT_S) -> ApprovalDecisionResult:
    """Approve or reject a gated action, across all runs, as ``approver`` (authenticated by the caller).

    ``authority`` signs the person's assertion bound to this approval, digest
    and decision; the run verifies it and enforces the rules (requester,
    editors, role, quorum, digest, expiry, decided once). ``digest`` is what
    the person was shown; None means the inbox row's. Answers how the approval
    stands, or ``queued`` when no worker took the decision within ``wait_s``
    seconds (see the module's docstring).

    Raises:
        NotFoundError: no approval has this id.
        ApprovalError: the run refused the decision, or it could not be recorded (then it does not count).
        AuthenticationError: the run could not verify who decided.
    """
    if (problem := rejection_problem(decision, comment)) is not None:
        raise InputError(problem)
    approval, handle = _pending(client, db, approval_id, approver)
    digest = digest or approval.digest
    assertion = authority.decide(user=approver.name, run_id=approval.run_id, approval_id=approval_id,
                                 digest=digest, action=decision, comment=comment, source=source)
    payload = _payload(ApprovalDecisionInput, approval_id=approval_id, decision=decision, digest=digest,
                       assertion=assertion, comment=comment, source=source)
    return await _deliver(handle, db, approval, approver, payload, AgentRunWorkflow.decide_approval,
                          AgentRunWorkflow.deliver_decision, key=decision_key(authority.assertion_id(assertion)),
                          action=decision, wait_s=wait_s)


async def edit_action(client: Client, db: Database, authority: Authority, *, approval_id: str,
                      approver: Approver, args: dict[str, Any], digest: str | None = None,
                      comment: str | None = None, source: str | None = None,
                      wait_s: float = DECISION_WAIT_S) -> ApprovalDecisionResult:
    """Correct a gated action's arguments; it goes through validation, facts and policy again.

    Answers ``edited``, or ``queued`` as :func:`decide_approval` does.

    Raises:
        NotFoundError: no approval has this id.
        ApprovalError: the run refused the edit (same rules as a decision), or it could not be recorded.
        AuthenticationError: the run could not verify who edited.
        ToolArgumentsError: the edited arguments do not fit the tool's schema.
    """
    check_document(args, "args", MAX_ARGUMENT_BYTES)
    approval, handle = _pending(client, db, approval_id, approver)
    digest = digest or approval.digest
    assertion = authority.decide(user=approver.name, run_id=approval.run_id, approval_id=approval_id,
                                 digest=digest, action="edit", args=args, comment=comment, source=source)
    payload = _payload(ApprovalEditInput, approval_id=approval_id, digest=digest, args=args, assertion=assertion,
                       comment=comment, source=source)
    return await _deliver(handle, db, approval, approver, payload, AgentRunWorkflow.edit_action,
                          AgentRunWorkflow.deliver_edit, key=decision_key(authority.assertion_id(assertion)),
                          action="edit", args=args, wait_s=wait_s)


def _payload(model: type[T], **fields: Any) -> T:
    """A decision's payload, or an ``InputError`` naming the field (a comment too long, say)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, "(decision)")) from None


def _pending(client: Client, db: Database, approval_id: str,
             approver: Approver) -> tuple[ApprovalView, WorkflowHandle[AgentRunWorkflow, RunResult]]:
    approval = db.call(repo.get_approval, approval_id=approval_id)
    if approval is None:
        raise NotFoundError(f"no approval {approval_id}")
    if approval.status != "pending":
        raise ApprovalError(f"approval {approval_id} is already {approval.status}")
    for waiting in approval.waiting:
        if waiting.by == approver.name:  # the run would refuse a second one anyway: say why now
            raise ApprovalError(f"{approver.name} already decided approval {approval_id}: {waiting_text(waiting)}")
    return approval, client.get_workflow_handle_for(AgentRunWorkflow.run, approval.run_id)


def waiting_text(queued: QueuedDecision) -> str:
    """A queued decision that no worker has applied yet, in words."""
    return (f"{queued.by}'s {queued.action} was accepted for delivery at {queued.queued_at:%Y-%m-%d %H:%M:%S} UTC "
            "and will apply when a worker is back")


_ERRORS = {"NotFoundError": NotFoundError, "ToolArgumentsError": ToolArgumentsError,
           "AuthenticationError": AuthenticationError}


def _refusal(exc: WorkflowUpdateFailedError) -> Exception:
    cause = exc.cause
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
    kind = cause.type if isinstance(cause, ApplicationError) else None
    return _ERRORS.get(kind or "", ApprovalError)(message)


async def _deliver(handle: WorkflowHandle[AgentRunWorkflow, RunResult], db: Database, approval: ApprovalView,
                   approver: Approver, payload: T,
                   update: UpdateMethodMultiParam[[AgentRunWorkflow, T], Awaitable[ApprovalDecisionResult]],
                   signal: MethodSyncOrAsyncSingleParam[AgentRunWorkflow, T, None], *, key: str, action: str,
                   wait_s: float, args: dict[str, Any] | None = None) -> ApprovalDecisionResult:
    """Offer the decision as an update for ``wait_s`` seconds, else queue it and send it as a signal.

    ``key`` is the decision's (``decision_key`` of its assertion's id). A worker that took the update
    late has recorded the decision under it before counting it, so the queued record then says how it
    went and cannot be withdrawn: the person is never told that a decision which counted does not.
    """
    try:
        # temporalio types an async handler under ``@workflow.update(name=...)`` as returning its awaitable;
        # what the update answers is the awaited value, decoded with the handler's return type. The update's
        # id is the decision's key: the same decision offered again is the same update.
        return cast(ApprovalDecisionResult,
                    await asyncio.wait_for(handle.execute_update(update, payload, id=key), wait_s))
    except WorkflowUpdateFailedError as exc:  # the run refused it: nothing was recorded
        raise _refusal(exc) from exc
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        why = f"no worker took it within {wait_s:g} s"
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the run has ended (or never was): nothing can take it
            raise ApprovalError(f"run {approval.run_id} cannot take decisions now: {exc.message}") from exc
        why = f"Temporal did not confirm it ({exc.message})"
    # The update may still be held in memory by Temporal and applied later; the run counts the decision
    # once by its key, so sending the same signed decision durably cannot make it count twice.
    comment = getattr(payload, "comment", None)
    queued = db.call(repo.queue_decision, key=key, approval_id=approval.approval_id, run_id=approval.run_id,
                     by=approver.name, action=action, digest=getattr(payload, "digest", ""), comment=comment,
                     args=args, source=getattr(payload, "source", None))
    try:
        await asyncio.wait_for(handle.signal(signal, payload, rpc_timeout=timedelta(seconds=wait_s)), wait_s + 1)
    except (RPCError, TimeoutError) as exc:
        problem = exc.message if isinstance(exc, RPCError) else f"no answer within {wait_s:g} s"
        withdrawn = db.call(repo.withdraw_decision, key=key, reason=f"it could not be delivered: {problem}")
        if withdrawn is None or withdrawn.status == "withdrawn":
            raise ApprovalError(f"approval {approval.approval_id}: the decision was not recorded ({why}, and "
                                f"Temporal did not take it for delivery: {problem}); it does not count, "
                                "decide again") from exc
        queued = withdrawn  # a worker has it already: the record says how it goes
    return _answer(db, approval, db.call(repo.queued_decision, key=key) or queued, why)


def _answer(db: Database, approval: ApprovalView, queued: QueuedDecision, why: str) -> ApprovalDecisionResult:
    """What to tell the person about a decision sent for delivery: applied already, refused, or queued."""
    if queued.status == "refused":
        raise ApprovalError(queued.reason or f"approval {approval.approval_id}: the run refused the decision")
    now = db.call(repo.get_approval, approval_id=approval.approval_id) or approval
    approvals = len({v.get("by") for v in now.votes if v.get("decision") == "approve"})
    if queued.status == "applied":
        status = now.status if now.status in ("pending", "approved", "rejected", "edited", "expired") else "pending"
        return ApprovalDecisionResult(approval_id=approval.approval_id, status=status,  # type: ignore[arg-type]
                                      approvals=approvals, needed=now.min_approvals,
                                      detail=f"applied by the run: {queued.result or status}")
    return ApprovalDecisionResult(approval_id=approval.approval_id, status="queued", approvals=approvals,
                                  needed=now.min_approvals, detail=f"{waiting_text(queued)} ({why})")
