"""The repository functions the rest of the engine calls, gathered from their aggregates.

Each function is keyword-only, takes a session (callers use ``Database.call``)
and returns store-owned models, never rows. They live by aggregate:
:mod:`~engine.store.runs`, :mod:`~engine.store.approvals`,
:mod:`~engine.store.timeline`, :mod:`~engine.store.executions` and
:mod:`~engine.store.model_calls`; this module keeps one place to import them from.
"""

from typing import NamedTuple

from sqlmodel import Session

from engine.runtime.payloads import ResolvedRun
from engine.store.approvals import (
    ApprovalView,
    QueuedDecision,
    claim_delivery,
    close_approval,
    get_approval,
    inbox,
    inbox_facets,
    list_approvals,
    open_approvals,
    queue_decision,
    queued_by,
    queued_decision,
    settle_decision,
    withdraw_decision,
)
from engine.store.authority import use_assertion
from engine.store.calls import Edit, PastCall, calls_so_far, edits_of
from engine.store.decisions import actions_decided, key_decided
from engine.store.executions import (
    Execution,
    Standing,
    finish_execution,
    get_execution,
    standing,
    start_execution,
)
from engine.store.model_calls import (
    PromptVersion,
    cost_today,
    prompt_version,
    prompt_versions,
    record_model_call,
    record_validation,
)
from engine.store.runs import (
    RunView,
    get_run,
    record_refused_run,
    record_run,
    register_run,
    resolved_run,
    workflow_names,
)
from engine.store.timeline import TimelineEntry, run_timeline

__all__ = [
    "ApprovalView", "Edit", "Execution", "PastCall", "PolicyContext", "PromptVersion", "QueuedDecision", "RunView",
    "Standing", "TimelineEntry", "admit_run", "calls_so_far", "claim_delivery", "close_approval", "cost_today",
    "edits_of", "finish_execution", "get_approval", "get_execution", "get_run", "inbox",
    "inbox_facets", "list_approvals", "open_approvals", "policy_context", "prompt_version", "prompt_versions",
    "queue_decision", "queued_by", "queued_decision", "recheck_context", "record_model_call", "record_refused_run",
    "record_run", "record_validation", "register_run", "resolved_run", "run_timeline", "settle_decision", "standing",
    "start_execution", "withdraw_decision", "workflow_names",
]


# Reads and writes that one step makes together, in one session (a session and a thread hand-off each
# cost the worker more CPU than the queries themselves).


def admit_run(session: Session, *, run: ResolvedRun, jti: str, roles: list[str], used_by: str) -> None:
    """Spend the run's start assertion and record the run (``resolve_run``'s writes).

    Raises:
        AuthenticationError: the assertion was used already, or another workflow run started this run.
    """
    use_assertion(session, jti=jti, run_id=run.run_id, approval_id="", idempotency_key="", digest="",
                  action="start", subject=run.requested_by, roles=roles, used_by=used_by)
    register_run(session, run=run)


class PolicyContext(NamedTuple):
    """What the store tells ``evaluate_policy`` before it asks the policy."""

    decided: int  # distinct actions the run has had decided
    seen: bool  # this action among them (an edit or a re-check): counted once; only read past the limit
    past: list[PastCall]  # every earlier action of the run the policy decided and what it came to, oldest first
    edits: list[Edit]  # arguments verified people wrote for this action


def policy_context(session: Session, *, run_id: str, key: str, limit: int) -> PolicyContext:
    """The run's decided actions (and whether ``key`` is one, once ``limit`` is reached) and what each of the
    others came to."""
    decided = actions_decided(session, run_id=run_id)
    past, edits = recheck_context(session, run_id=run_id, key=key)
    return PolicyContext(decided=decided, seen=decided >= limit and key_decided(session, key=key), past=past,
                         edits=edits)


def recheck_context(session: Session, *, run_id: str, key: str) -> tuple[list[PastCall], list[Edit]]:
    """What the policy input needs of the store besides the run (the re-check reads only this): what each
    other action of the run came to, and the arguments verified people wrote for this one."""
    return calls_so_far(session, run_id=run_id, excluding=key), edits_of(session, key=key)
