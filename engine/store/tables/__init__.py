"""SQLModel tables: the run index and the audit trail, one module per aggregate.

Import the rows from here: importing this package registers every table on
``SQLModel.metadata``, which the migrations (``engine/store/migrations/env.py``)
are checked against. Rows never leave the store raw: repository functions
return our pydantic models or plain dicts.

- ``_runs``: a run and its model side (run index, model calls, endpoints' breakers, schema checks, prompts,
  definitions);
- ``_actions``: an action's path to its effect (policy decisions, executions, leases, chain transactions);
- ``_evals``: workflow evaluations (``airlock eval``): a dataset run against a workflow version, and its cases;
- ``_shadow``: saved shadow evaluations (``airlock policy shadow --save``) and their changed decisions;
- ``_people``: approvals and the people behind them (events, queued decisions, assertions, accounts, tokens,
  sessions).
"""

from __future__ import annotations

from engine.store.tables._actions import (
    ActionLockRow,
    ChainSenderRow,
    ChainTransactionRow,
    PolicyDecisionRow,
    ToolExecutionRow,
)
from engine.store.tables._clock import utcnow
from engine.store.tables._evals import EvalCaseRow, EvalRunRow
from engine.store.tables._people import (
    ApiTokenRow,
    ApprovalEventRow,
    ApprovalRow,
    PersonAssertionRow,
    QueuedDecisionRow,
    SignInFailureRow,
    UiSessionRow,
    UserRow,
)
from engine.store.tables._runs import (
    ModelBreakerRow,
    ModelCallRow,
    PromptVersionRow,
    RunRow,
    ValidationRow,
    WorkflowDefinitionRow,
)
from engine.store.tables._shadow import ShadowChangeRow, ShadowReportRow

__all__ = [
    "ActionLockRow", "ApiTokenRow", "ApprovalEventRow", "ApprovalRow", "ChainSenderRow", "ChainTransactionRow",
    "EvalCaseRow", "EvalRunRow",
    "ModelBreakerRow", "ModelCallRow", "PersonAssertionRow", "PolicyDecisionRow", "PromptVersionRow",
    "QueuedDecisionRow", "RunRow", "ShadowChangeRow", "ShadowReportRow", "SignInFailureRow", "ToolExecutionRow",
    "UiSessionRow", "UserRow", "ValidationRow",
    "WorkflowDefinitionRow", "utcnow",
]
