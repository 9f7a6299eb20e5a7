"""The repository functions the rest of the engine calls, gathered from their aggregates.

Each function is keyword-only, takes a session (callers use ``Database.call``)
and returns store-owned models, never rows. They live by aggregate:
:mod:`~engine.store.runs`, :mod:`~engine.store.approvals`,
:mod:`~engine.store.timeline`, :mod:`~engine.store.executions` and
:mod:`~engine.store.model_calls`; this module keeps one place to import them from.
"""

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
from engine.store.executions import (
    Execution,
    Standing,
    executed_calls,
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
    "ApprovalView", "Execution", "PromptVersion", "QueuedDecision", "RunView", "Standing", "TimelineEntry",
    "claim_delivery", "close_approval", "cost_today", "executed_calls", "finish_execution", "get_approval",
    "get_execution", "get_run", "inbox", "inbox_facets", "list_approvals", "open_approvals", "prompt_version",
    "prompt_versions", "queue_decision", "queued_by", "queued_decision", "record_model_call", "record_refused_run",
    "record_run", "record_validation", "register_run", "resolved_run", "run_timeline", "settle_decision",
    "standing", "start_execution", "withdraw_decision", "workflow_names",
]
