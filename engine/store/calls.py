"""What each call of a run came to so far: the policy's ``run.previous`` and the sources provenance reads.

One entry per action (idempotency key) the policy decided, in the order first decided: its latest
arguments and decision, the approval it waited for, and its execution with the result. Denied, rejected
and expired calls are in it too: a policy may weigh what the model tried before.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from sqlmodel import Session, col, select

from engine.store.tables import ApprovalRow, PolicyDecisionRow, QueuedDecisionRow, ToolExecutionRow

CallOutcome = Literal["executed", "failed", "running", "denied", "allowed", "pending_approval", "approved",
                      "rejected", "expired"]
# An approval's status, as the outcome of its action when nothing ran (approved and still waiting to run:
# "approved"; decided by the expiry: "expired").
_BY_APPROVAL: dict[str, CallOutcome] = {"pending": "pending_approval", "approved": "approved",
                                        "rejected": "rejected", "expired": "expired"}
_BY_EXECUTION: dict[str, CallOutcome] = {"succeeded": "executed", "failed": "failed", "started": "running"}
_BY_DECISION: dict[str, CallOutcome] = {"allow": "allowed", "deny": "denied", "require_approval": "pending_approval"}


class PastCall(BaseModel):
    """One earlier action of a run and what it came to."""

    key: str  # idempotency key
    call_id: str
    tool: str
    args: dict[str, Any]
    outcome: CallOutcome
    result: Any = None  # the execution's result, when it ran and succeeded
    error: str | None = None  # a failed execution's error, as the model was told it
    # Every traced argument of the call was trusted when it was decided (``input.provenance``): only then
    # does its result carry the trust its tool declares. A read the model aimed where untrusted text said
    # (an attacker's token, an invoice id from an email) vouches for nothing it returns.
    args_trusted: bool = False


def calls_so_far(session: Session, *, run_id: str, excluding: str | None = None) -> list[PastCall]:
    """Every action of ``run_id`` the policy decided (but ``excluding``, an idempotency key), oldest first."""
    decisions = session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.run_id == run_id)
                             .order_by(col(PolicyDecisionRow.created_at), col(PolicyDecisionRow.decision_id))).all()
    latest: dict[str, PolicyDecisionRow] = {}
    for row in decisions:  # oldest first: insertion order is the order first decided, the value the latest
        if row.idempotency_key and row.idempotency_key != excluding:
            latest[row.idempotency_key] = row
    if not latest:
        return []
    executions = {r.idempotency_key: r for r in session.exec(
        select(ToolExecutionRow).where(ToolExecutionRow.run_id == run_id)).all()}
    approvals = {r.approval_id: r for r in session.exec(select(ApprovalRow).where(ApprovalRow.run_id == run_id)).all()}
    calls = []
    for key, decision in latest.items():
        ran, approval = executions.get(key), approvals.get(decision.approval_id or "")
        if ran is not None:
            outcome = _BY_EXECUTION.get(ran.status, "running")
        elif decision.outcome == "deny":  # a later decision (a re-check after the approval) refused it
            outcome = "denied"
        elif approval is not None:
            outcome = _BY_APPROVAL.get(approval.status, "pending_approval")
        else:
            outcome = _BY_DECISION.get(decision.outcome, "denied")
        args = ran.args if ran is not None else (decision.input.get("tool") or {}).get("args") or {}
        calls.append(PastCall(key=key, call_id=decision.call_id, tool=decision.tool, args=args, outcome=outcome,
                              result=ran.result if ran is not None and ran.status == "succeeded" else None,
                              error=ran.error if ran is not None else None,
                              args_trusted=_all_trusted(decision.input.get("provenance"))))
    return calls


def _all_trusted(provenance: Any) -> bool:
    """Whether a decision's ``input.provenance`` found every traced argument trusted (none traced: yes; a
    decision made before provenance existed: no)."""
    return isinstance(provenance, dict) and all(isinstance(e, dict) and e.get("trusted") is True
                                                for e in provenance.values())


class Edit(BaseModel):
    """Arguments a verified person wrote for an action (an edit the worker took)."""

    by: str
    args: dict[str, Any]


def edits_of(session: Session, *, key: str) -> list[Edit]:
    """The edits verified people made to the action ``key`` (idempotency key), oldest first: each one's
    assertion was bound to exactly these arguments, and the worker took it (delivering or applied)."""
    approvals = session.exec(select(PolicyDecisionRow.approval_id).where(
        PolicyDecisionRow.idempotency_key == key, col(PolicyDecisionRow.approval_id).is_not(None))).all()
    if not approvals:
        return []
    rows = session.exec(select(QueuedDecisionRow).where(
        col(QueuedDecisionRow.approval_id).in_(set(approvals)), QueuedDecisionRow.action == "edit",
        col(QueuedDecisionRow.status).in_(("delivering", "applied"))).order_by(col(QueuedDecisionRow.queued_at))).all()
    return [Edit(by=r.by, args=r.args) for r in rows if isinstance(r.args, dict)]
