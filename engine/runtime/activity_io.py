"""Each activity's one input and one result model (``<Name>Input`` / ``<Name>Result``).

Activities take and return only these, so fields can be added later without
breaking recorded histories; ``engine.runtime.contract`` declares the
activities with them. The run's own records (requests, tool-call records,
verdicts) are in ``engine.runtime.payloads``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from engine.runtime.payloads import (
    ApprovalVote,
    PolicyDecision,
    ResolvedRun,
    RunRequest,
    RunResult,
    RunStatus,
    ToolCallRecord,
)
from engine.spec import ModelSpec


class ResolveRunInput(BaseModel):
    request: RunRequest


class ResolveRunResult(BaseModel):
    run: ResolvedRun


class RecordRunInput(BaseModel):
    run_id: str
    status: RunStatus
    result: RunResult | None = None


class RecordRunResult(BaseModel):
    ok: bool = True


class CallModelInput(BaseModel):
    """One model call. The worker takes the model, tools, prices and budgets from the run's own
    definition (the fields below ``step_class`` are overwritten from it): a request cannot point a
    run at another endpoint or key."""

    run_id: str
    step: int
    model: ModelSpec
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    workflow: str = ""
    version: int = 0
    tenant: str = "default"
    prompt_hash: str | None = None
    daily_cost_cap: float | None = None
    step_class: str | None = None  # which route chose the model (see spec.STEP_CLASSES)
    output_schema: dict[str, Any] | None = None  # asked of the final answer as a JSON-schema response format


class ProposedCall(BaseModel):
    id: str
    name: str
    arguments: str


class EndpointAttempt(BaseModel):
    """One endpoint tried for a model call, and why it did not answer (None when it did)."""

    endpoint: str
    error: str | None = None
    latency_ms: float = 0.0


class CallModelResult(BaseModel):
    content: str | None = None
    tool_calls: list[ProposedCall] = Field(default_factory=list)
    model: str
    provider_label: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    fallback_used: bool = False
    attempts: list[EndpointAttempt] = Field(default_factory=list)
    refused: str | None = None  # a budget said no before any endpoint was called


class GuardInputInput(BaseModel):
    """The user's message; the guard (size limit, redaction hook) is the run's own definition's."""

    run_id: str
    message: str


class GuardInputResult(BaseModel):
    message: str
    redacted: bool = False


class ValidateCallInput(BaseModel):
    """The tool is looked up by name in the run's own definition; ``step``/``call_id`` put the
    result on the run's timeline."""

    run_id: str
    tool: str
    raw_arguments: str
    step: int | None = None
    call_id: str | None = None


class ValidateCallResult(BaseModel):
    ok: bool
    args: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class ValidateOutputInput(BaseModel):
    """A final answer checked against the workflow's output model (recorded on the timeline)."""

    run_id: str
    step: int
    content: str | None


class ValidateOutputResult(BaseModel):
    ok: bool
    value: dict[str, Any] | None = None
    error: str | None = None


class EvaluatePolicyInput(BaseModel):
    """One call whose arguments were validated; the worker reads its facts and builds the policy input itself."""

    run_id: str
    call: ToolCallRecord


class EvaluatePolicyResult(BaseModel):
    """The decision, on the facts the worker read itself (also shown to the approver)."""

    decision: PolicyDecision
    digest: str
    facts: dict[str, Any] = Field(default_factory=dict)
    approval_id: str | None = None


# The type of the error ``check_call`` gives when the arguments' check itself could not be recorded (the
# store is down): the call is denied as unchecked, not as "facts unavailable".
UNCHECKED = "ArgumentsCheckUnrecorded"


class CheckCallInput(BaseModel):
    """One proposed call (``raw_arguments``, ``step``, ``call_id`` as the model gave them): validated and,
    when valid, decided, in one step."""

    run_id: str
    call: ToolCallRecord


class CheckCallResult(BaseModel):
    """``valid`` as ``validate_tool_call`` answers; ``decided`` as ``evaluate_policy`` does, when valid."""

    valid: ValidateCallResult
    decided: EvaluatePolicyResult | None = None


class OpenApprovalsInput(BaseModel):
    """The inbox rows are built from the worker's own decision records; ``calls`` only name them."""

    run_id: str
    expires_at: datetime
    calls: list[ToolCallRecord]


class OpenApprovalsResult(BaseModel):
    opened: int


class CloseApprovalInput(BaseModel):
    approval_id: str
    run_id: str = ""
    digest: str = ""
    status: Literal["pending", "approved", "rejected", "expired", "edited"]
    votes: list[ApprovalVote] = Field(default_factory=list)
    reason: str | None = None


class CloseApprovalResult(BaseModel):
    ok: bool = True


class ExecuteToolInput(BaseModel):
    """The action to run; the worker finds the tool in the run's definition and checks its authority."""

    run_id: str
    call: ToolCallRecord


class ReleaseLeaseInput(BaseModel):
    """An ``execute_tool`` activity (by id) of this run that gave up: the lease its attempts held goes back.
    ``ended``: its last attempt ended by raising (not a timeout or a cancellation: nothing of it still runs)."""

    run_id: str
    activity_id: str
    ended: bool = False


class ReleaseLeaseResult(BaseModel):
    """How many leases went back."""

    released: int


class ExecuteToolResult(BaseModel):
    """``stale``: the facts read again right before executing differ from the ones
    policy (and approval) saw, in the listed ``changed`` fields; nothing ran."""

    ok: bool
    result: Any = None
    error: str | None = None
    replayed: bool = False
    stale: bool = False
    changed: list[str] = Field(default_factory=list)
    refused: bool = False  # the store holds no decision (or approvals) authorising exactly this action


class VerifyPersonInput(BaseModel):
    """A person's signed assertion, and what it must be bound to."""

    run_id: str
    approval_id: str
    digest: str
    action: Literal["approve", "reject", "edit"]
    assertion: str
    args: dict[str, Any] | None = None
    comment: str | None = None
    source: str | None = None


class SettleDecisionInput(BaseModel):
    """What the run made of one delivery of a decision (by update or by signal): ``decision`` as it was sent
    to ``verify_person``. The worker finds the decision's record by the id of its verified assertion, and
    only a delivery the assertion is bound to speaks for it."""

    run_id: str
    decision: VerifyPersonInput
    status: Literal["applied", "refused"]
    reason: str | None = None
    result: str | None = None  # the approval's status once applied


class SettleDecisionResult(BaseModel):
    settled: bool = False  # False: no record of this decision (none queued, none taken), or not its delivery


class VerifiedPerson(BaseModel):
    """Who the assertion proves, with roles and tenants read from the user store."""

    name: str
    roles: list[str] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)

