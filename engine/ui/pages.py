"""Server-rendered pages: sign-in, the inbox, the detail page and its decision form.

A decision the run applied is flashed as such; one no worker took in time is
flashed as queued (accepted for delivery, it applies when a worker is back),
and the inbox and the detail page show it as waiting until the run applied or
refused it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engine.boundary.people import decision_refusal
from engine.errors import AirlockError, InputError
from engine.present import described
from engine.runtime.payloads import ApprovalDecisionResult
from engine.runtime.runs import (
    ENDED,
    MAX_CANCEL_REASON,
    cancel_run,
    decide_approval,
    edit_action,
    may_cancel,
    run_progress,
    waiting_text,
)
from engine.store import repo, users
from engine.store.users import Approver
from engine.ui.auth import (
    check_csrf,
    check_password,
    client_address,
    csrf_token,
    identify,
    own_approval,
    own_run,
    page_user,
    sign_in,
    sign_out,
)
from engine.ui.services import services

router = APIRouter(include_in_schema=False)


def _render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("user", identify(request))
    context["csrf"] = csrf_token(request)
    context["flash"] = request.session.pop("flash", None)
    return services(request).templates.TemplateResponse(request, name, context, status_code=status)


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    return _render(request, "login.html", user=None, next=_safe_next(next), error=None)


@router.post("/login")
def login(request: Request, username: str = Form(...), password: str = Form(...), csrf: str = Form(""),
          next: str = Form("/")) -> Response:
    check_csrf(request, csrf)
    user, wait = check_password(request, username.strip(), password)
    if wait:
        page = _render(request, "login.html", status=429, user=None, next=_safe_next(next),
                       error=f"Too many failed sign-ins; try again in {wait} seconds.")
        page.headers["Retry-After"] = str(wait)
        return page
    if user is None:
        return _render(request, "login.html", status=401, user=None, next=_safe_next(next),
                       error="Wrong user name or password.")
    sign_in(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    check_csrf(request, csrf)
    sign_out(request)
    return RedirectResponse("/login", status_code=303)


def _inbox_context(request: Request, user: Approver, workflow: str | None, tool: str | None, role: str | None,
                   page: int) -> dict[str, Any]:
    settings = services(request).settings
    db = services(request).db
    items, total = db.call(repo.inbox, tenants=user.tenants, workflow=workflow or None, tool=tool or None,
                           role=role or None, page=page, page_size=settings.ui.page_size)
    facets = db.call(repo.inbox_facets, tenants=user.tenants)
    pages = max(1, -(-total // settings.ui.page_size))
    return {"items": items, "total": total, "page": min(max(page, 1), pages), "pages": pages, "facets": facets,
            "filters": {"workflow": workflow or "", "tool": tool or "", "role": role or ""}}


@router.get("/", response_class=HTMLResponse)
def inbox_page(request: Request, workflow: str | None = None, tool: str | None = None, role: str | None = None,
               page: int = 1, user: Approver = Depends(page_user)) -> Response:
    return _render(request, "inbox.html", user=user, **_inbox_context(request, user, workflow, tool, role, page))


@router.get("/inbox/rows", response_class=HTMLResponse)
def inbox_rows(request: Request, workflow: str | None = None, tool: str | None = None, role: str | None = None,
               page: int = 1, user: Approver = Depends(page_user)) -> Response:
    """The inbox table body alone, for the page's refresh."""
    return _render(request, "_rows.html", user=user, **_inbox_context(request, user, workflow, tool, role, page))


def why_not(user: Approver, item: repo.ApprovalView) -> str | None:
    """Why this user may not decide this item (shown; the run enforces it anyway)."""
    if item.status != "pending":
        return f"This action is {item.status}."
    refusal = decision_refusal(person=user.name, roles=user.roles, requester=item.requested_by,
                               editors={v["by"] for v in item.votes if v.get("decision") == "edit"},
                               approvers=item.approvers)
    if refusal is not None:
        return f"You may not decide this action: {refusal}."
    if any(v["by"] == user.name for v in item.votes):
        return "You already decided this action."
    for queued in item.waiting:
        if queued.by == user.name:
            return f"You already decided this action: {waiting_text(queued)}."
    return None


def _queued_flash(result: ApprovalDecisionResult) -> dict[str, str]:
    return {"kind": "queued", "text": f"Queued, not applied yet: {result.detail or 'accepted for delivery'}. "
                                      "This page shows when the run has applied it, or why not."}


@router.get("/approvals/{approval_id}", response_class=HTMLResponse)
async def detail_page(request: Request, approval_id: str, user: Approver = Depends(page_user)) -> Response:
    item = own_approval(request, approval_id, user)
    timeline = described(services(request).db.call(repo.run_timeline, run_id=item.run_id))
    events = services(request).db.call(users.events_for, approval_id=approval_id)
    temporal_url = services(request).settings.temporal.ui_url(item.run_id)
    names = await services(request).policy.labels()
    return _render(request, "detail.html", user=user, item=item, timeline=timeline, events=events,
                   blocked=why_not(user, item), temporal_url=temporal_url, names=names)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str, user: Approver = Depends(page_user)) -> Response:
    """One run: its status, usage and every recorded step, with a link to the Temporal UI."""
    from engine.present import usage_of

    found = own_run(request, run_id, user)
    timeline = described(services(request).db.call(repo.run_timeline, run_id=run_id))
    temporal_url = services(request).settings.temporal.ui_url(run_id)
    progress = None
    if found.status in ("running", "waiting_approval"):  # ask the run where it is now (best effort)
        try:
            progress = await asyncio.wait_for(run_progress(await services(request).temporal(), run_id), 5)
        except Exception:  # noqa: BLE001 - the recorded timeline is shown either way
            progress = None
    cancel_roles = services(request).settings.auth.cancel_roles
    return _render(request, "run.html", user=user, run=found, timeline=timeline, usage=usage_of(timeline),
                   temporal_url=temporal_url, progress=progress,
                   may_cancel=found.status not in ENDED and may_cancel(user, found, cancel_roles),
                   max_cancel_reason=MAX_CANCEL_REASON)


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str, reason: str = Form(""), csrf: str = Form(""),
                 user: Approver = Depends(page_user)) -> Response:
    """Cancel the run (its requester, or a cancel role): what waits for people expires."""
    check_csrf(request, csrf)
    own_run(request, run_id, user)
    state = services(request)
    try:
        await cancel_run(await state.temporal(), state.db, run_id=run_id, person=user, reason=reason,
                         cancel_roles=state.settings.auth.cancel_roles)
        request.session["flash"] = {"kind": "ok", "text": "Cancelling: the run closes what waits for people and "
                                                          "records itself cancelled."}
    except AirlockError as exc:
        request.session["flash"] = {"kind": "error", "text": str(exc)}
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


STATS_WINDOWS = {"1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days"}


@router.get("/stats", response_class=HTMLResponse)
def stats_page(request: Request, since: str = "24h", workflow: str | None = None,
               user: Approver = Depends(page_user)) -> Response:
    """How runs went over a window: the figures of ``airlock stats``, with plots."""
    from engine.spec import parse_duration
    from engine.store.evals import recent_evals
    from engine.store.stats import stats
    from engine.ui import charts

    if since not in STATS_WINDOWS:
        raise InputError(f"since: choose one of {', '.join(STATS_WINDOWS)}, not {since!r}")
    figures = services(request).db.call(stats, since=parse_duration(since), workflow=workflow or None,
                                        tenants=user.tenants)
    workflows = services(request).db.call(repo.workflow_names, tenants=user.tenants)
    evals = services(request).db.call(recent_evals, tenants=user.tenants, workflow=workflow or None, limit=10)
    series, latency, boundary = figures["series"], figures["latency_ms"], figures["boundary"]
    per = series["unit"]
    plots = [
        charts.columns(f"Runs per {per}, by status", series["buckets"], series["runs_by_status"]),
        charts.columns(f"Model cost per {per}", series["buckets"], {"cost": series["cost"]}),
        charts.bars("Latency per step kind, p50 and p95 (ms)",
                    [(f"{kind} {q}", figures[q] or 0.0) for kind, figures in latency.items() for q in ("p50", "p95")],
                    unit=" ms"),
        charts.bars("Policy decisions", [(k, float(v)) for k, v in boundary["outcomes"].items()]),
        charts.bars("Approvals (escalations) by outcome", [(k, float(v)) for k, v in boundary["approvals"].items()]),
    ]
    return _render(request, "stats.html", user=user, figures=figures, plots=plots, windows=STATS_WINDOWS,
                   since=since, workflow=workflow or "", workflows=workflows, evals=evals)


@router.get("/shadow", response_class=HTMLResponse)
def shadow_list_page(request: Request, user: Approver = Depends(page_user)) -> Response:
    """Saved shadow evaluations, newest first: candidate policies tried on recorded traffic."""
    from engine.store.shadow_reports import recent_reports

    return _render(request, "shadow_list.html", user=user, reports=services(request).db.call(recent_reports))


SHADOW_PAGE = 50


@router.get("/shadow/{report_id}", response_class=HTMLResponse)
def shadow_page(request: Request, report_id: str, transition: str | None = None, page: int = 1,
                user: Approver = Depends(page_user)) -> Response:
    """One saved shadow evaluation: its figures, and the changed decisions of the reviewer's tenants."""
    from engine.errors import NotFoundError
    from engine.store.shadow_reports import get_report, report_changes

    db = services(request).db
    report = db.call(get_report, report_id=report_id)
    if report is None:
        raise NotFoundError(f"no saved shadow report {report_id}")
    if transition is not None and transition not in report.transitions:
        raise InputError(f"transition: this report has {', '.join(report.transitions) or 'no changes'}, "
                         f"not {transition!r}")
    page = max(1, page)
    changes, total = db.call(report_changes, report_id=report_id, tenants=user.tenants, transition=transition,
                             offset=(page - 1) * SHADOW_PAGE, limit=SHADOW_PAGE)
    return _render(request, "shadow.html", user=user, report=report, changes=changes, total=total,
                   transition=transition, page=page, pages=max(1, -(-total // SHADOW_PAGE)))


@router.post("/approvals/{approval_id}/decide")
async def decide(request: Request, approval_id: str, decision: str = Form(...), comment: str = Form(""),
                 digest: str = Form(...), csrf: str = Form(""), user: Approver = Depends(page_user)) -> Response:
    check_csrf(request, csrf)
    own_approval(request, approval_id, user)
    if decision not in ("approve", "reject"):
        request.session["flash"] = {"kind": "error", "text": f"unknown decision {decision!r}"}
    else:
        try:
            state = services(request)
            result = await decide_approval(await services(request).temporal(), state.db, state.authority,
                                           approval_id=approval_id, decision=decision,  # type: ignore[arg-type]
                                           approver=user, comment=comment.strip() or None, digest=digest,
                                           source=client_address(request),
                                           wait_s=state.settings.temporal.decision_wait_s)
            text = (f"Recorded: {result.approvals} of {result.needed} approvals." if result.status == "pending"
                    else f"The action is {result.status}.")
            request.session["flash"] = (_queued_flash(result) if result.status == "queued"
                                        else {"kind": "ok", "text": text})
        except AirlockError as exc:
            request.session["flash"] = {"kind": "error", "text": str(exc)}
    return RedirectResponse(f"/approvals/{approval_id}", status_code=303)


@router.post("/approvals/{approval_id}/edit")
async def edit(request: Request, approval_id: str, user: Approver = Depends(page_user)) -> Response:
    """Correct the arguments; the corrected action goes back through the boundary."""
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    own_approval(request, approval_id, user)
    args = {str(k)[4:]: str(v) for k, v in form.items() if str(k).startswith("arg:")}
    try:
        state = services(request)
        result = await edit_action(await services(request).temporal(), state.db, state.authority,
                                   approval_id=approval_id, approver=user, args=args,
                                   digest=str(form.get("digest", "")),
                                   comment=str(form.get("comment", "")).strip() or None,
                                   source=client_address(request), wait_s=state.settings.temporal.decision_wait_s)
    except AirlockError as exc:
        request.session["flash"] = {"kind": "error", "text": str(exc)}
        return RedirectResponse(f"/approvals/{approval_id}", status_code=303)
    if result.status == "queued":
        request.session["flash"] = _queued_flash(result)
        return RedirectResponse(f"/approvals/{approval_id}", status_code=303)
    request.session["flash"] = {"kind": "ok", "text": "Edited: the corrected action goes through validation and "
                                                      "policy again, and waits here if it needs approval."}
    return RedirectResponse("/", status_code=303)
