"""The JSON API under ``/api``: the same rules as the pages, for scripts and apps.

A decision or edit answers 200 when the run applied it, 202 with ``status``
``queued`` when no worker took it within ``AIRLOCK_TEMPORAL__DECISION_WAIT_S``
(accepted for delivery: it applies when a worker is back, and the approval's
``queued`` list shows when it has, or why not), 409/401/422 when it was
refused or could not be recorded (then it does not count).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.boundary.inputs import MAX_INPUT_BYTES, check_document
from engine.errors import AccessDeniedError, InputError
from engine.present import TimelineLine, described
from engine.runtime.payloads import ApprovalDecisionResult, RunProgress
from engine.runtime.runs import MAX_CANCEL_REASON, cancel_run, decide_approval, edit_action, run_progress, start_run
from engine.store import repo, users
from engine.store.repo import ApprovalView, RunView
from engine.store.users import Approver, EventView
from engine.ui.auth import api_user, check_csrf, client_address, own_approval, own_run, uses_session
from engine.ui.services import services

router = APIRouter(prefix="/api", tags=["api"])


class InboxPage(BaseModel):
    items: list[ApprovalView]
    total: int
    page: int


class ApprovalDetail(BaseModel):
    approval: ApprovalView
    events: list[EventView]


class _Request(BaseModel):
    """A request body: unknown fields are refused (a typo such as ``inputs`` must not start an empty run)."""

    model_config = ConfigDict(extra="forbid")


class DecisionRequest(_Request):
    """``digest`` is the action digest the decision was made on (from the approval)."""

    decision: Literal["approve", "reject"]
    digest: str = Field(max_length=200)
    comment: str | None = Field(default=None, max_length=2000)


class EditRequest(_Request):
    """New arguments for the same tool; ``digest`` is the action being corrected (limits: ``runs.edit_action``)."""

    digest: str = Field(max_length=200)
    args: dict[str, Any]
    comment: str | None = Field(default=None, max_length=2000)


class StartRunRequest(_Request):
    """Start a run of a workflow the workers serve (by spec or file name); the requester is the caller."""

    workflow: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=200)
    version: int | None = Field(default=None, ge=1, le=1_000_000)
    input: dict[str, Any] = Field(default_factory=dict)
    tenant: str = Field(default="default", max_length=64)

    @field_validator("input")
    @classmethod
    def _bounded_input(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            check_document(value, "input", MAX_INPUT_BYTES)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value


class StartRunResponse(BaseModel):
    run_id: str


class CancelRunRequest(_Request):
    """Why the run is cancelled (recorded with the caller's name)."""

    reason: str = Field(min_length=1, max_length=MAX_CANCEL_REASON)


class CancelRunResponse(BaseModel):
    """Asked: the run closes what waits for people and records itself cancelled (``GET /api/runs/{id}``)."""

    run_id: str
    status: Literal["cancelling"] = "cancelling"


class RunStatusResponse(BaseModel):
    run: RunView
    pending: list[ApprovalView]


class TimelineResponse(BaseModel):
    """What ``airlock runs show --json`` prints."""

    run: RunView
    usage: dict[str, Any]
    timeline: list[TimelineLine]


def _write_guard(request: Request, x_csrf_token: str | None) -> None:
    if uses_session(request):
        check_csrf(request, x_csrf_token)


@router.get("/me")
def me(user: Approver = Depends(api_user)) -> Approver:
    """Who the API thinks you are."""
    return user


@router.get("/approvals")
def list_approvals(request: Request, status: str | None = "pending", workflow: str | None = None,
                   tool: str | None = None, role: str | None = None, page: int = 1,
                   user: Approver = Depends(api_user)) -> InboxPage:
    """The inbox, newest first; ``status=`` (empty) lists every status."""
    items, total = services(request).db.call(repo.inbox, tenants=user.tenants, status=status or None,
                                             workflow=workflow, tool=tool, role=role, page=page,
                                             page_size=services(request).settings.ui.page_size)
    return InboxPage(items=items, total=total, page=page)


@router.get("/approvals/{approval_id}")
def get_approval(request: Request, approval_id: str, user: Approver = Depends(api_user)) -> ApprovalDetail:
    """One gated action and its audit trail."""
    item = own_approval(request, approval_id, user)
    return ApprovalDetail(approval=item, events=services(request).db.call(users.events_for, approval_id=approval_id))


def _answered(response: Response, result: ApprovalDecisionResult) -> ApprovalDecisionResult:
    if result.status == "queued":  # accepted for delivery, not applied yet
        response.status_code = 202
    return result


@router.post("/approvals/{approval_id}/decision", responses={202: {"description": "queued: accepted for delivery, "
                                                                   "applies when a worker is back"}})
async def decide(request: Request, response: Response, approval_id: str, body: DecisionRequest,
                 user: Approver = Depends(api_user),
                 x_csrf_token: str | None = Header(default=None)) -> ApprovalDecisionResult:
    """Approve or reject: 200 applied, 202 queued (no worker took it in time; it applies when one is back).
    Refused (409) for the requester, without the role, twice, expired or stale digest."""
    _write_guard(request, x_csrf_token)
    own_approval(request, approval_id, user)
    state = services(request)
    return _answered(response, await decide_approval(
        await state.temporal(), state.db, state.authority, approval_id=approval_id, decision=body.decision,
        approver=user, comment=body.comment, digest=body.digest, source=client_address(request),
        wait_s=state.settings.temporal.decision_wait_s))


@router.post("/approvals/{approval_id}/edit", responses={202: {"description": "queued: accepted for delivery, "
                                                               "applies when a worker is back"}})
async def edit(request: Request, response: Response, approval_id: str, body: EditRequest,
               user: Approver = Depends(api_user),
               x_csrf_token: str | None = Header(default=None)) -> ApprovalDecisionResult:
    """Correct the arguments instead of rejecting: the new action is checked and decided again (422 if invalid);
    202 when it was queued for delivery, as for a decision."""
    _write_guard(request, x_csrf_token)
    own_approval(request, approval_id, user)
    state = services(request)
    return _answered(response, await edit_action(
        await state.temporal(), state.db, state.authority, approval_id=approval_id, approver=user, args=body.args,
        digest=body.digest, comment=body.comment, source=client_address(request),
        wait_s=state.settings.temporal.decision_wait_s))


@router.post("/runs", status_code=201)
async def create_run(request: Request, body: StartRunRequest, user: Approver = Depends(api_user),
                     x_csrf_token: str | None = Header(default=None)) -> StartRunResponse:
    """Start a run as the caller."""
    _write_guard(request, x_csrf_token)
    if body.tenant not in user.tenants:
        raise AccessDeniedError(f"{user.name} does not belong to tenant {body.tenant!r}")
    settings = services(request).settings
    spec = await asyncio.to_thread(services(request).definitions().resolve, body.workflow, version=body.version)
    handle = await start_run(await services(request).temporal(), services(request).authority,
                             task_queue=settings.temporal.task_queue, workflow=spec, run_input=body.input,
                             requested_by=user.name, tenant=body.tenant)
    return StartRunResponse(run_id=handle.id)


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel(request: Request, run_id: str, body: CancelRunRequest, user: Approver = Depends(api_user),
                 x_csrf_token: str | None = Header(default=None)) -> CancelRunResponse:
    """Cancel a run: its requester, or a person with one of ``AIRLOCK_AUTH__CANCEL_ROLES``. Refused (403) for
    anyone else, 409 once it has ended."""
    _write_guard(request, x_csrf_token)
    state = services(request)
    await cancel_run(await state.temporal(), state.db, run_id=run_id, person=user, reason=body.reason,
                     cancel_roles=state.settings.auth.cancel_roles)
    return CancelRunResponse(run_id=run_id)


@router.get("/runs/{run_id}")
def get_run(request: Request, run_id: str, user: Approver = Depends(api_user)) -> RunStatusResponse:
    """A run's status, its pending actions and, once it ended, its result."""
    run = own_run(request, run_id, user)
    pending = services(request).db.call(repo.list_approvals, run_id=run_id)
    return RunStatusResponse(run=run, pending=pending)


@router.get("/runs/{run_id}/timeline")
def get_timeline(request: Request, run_id: str, user: Approver = Depends(api_user)) -> TimelineResponse:
    """Every recorded step of a run: model calls, validations, policy decisions, approvals, executions."""
    from engine.present import usage_of

    run = own_run(request, run_id, user)
    timeline = described(services(request).db.call(repo.run_timeline, run_id=run_id))
    return TimelineResponse(run=run, usage=usage_of(timeline), timeline=timeline)


@router.get("/runs/{run_id}/progress")
async def get_progress(request: Request, run_id: str, user: Approver = Depends(api_user)) -> RunProgress:
    """Where a run is now (asked of the run itself): step, what it does, who it waits for."""
    own_run(request, run_id, user)
    return await run_progress(await services(request).temporal(), run_id)


@router.get("/stats")
def get_stats(request: Request, since: str = "24h", workflow: str | None = None,
              user: Approver = Depends(api_user)) -> dict[str, Any]:
    """The figures of ``airlock stats`` (``since``: 90m, 24h, 7d, ...)."""
    from engine.store.stats import stats, window

    return services(request).db.call(stats, since=window(since), workflow=workflow or None, tenants=user.tenants)
