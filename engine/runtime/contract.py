"""The activities as the workflow and the graph call them: a pinned name, one input and one result model each.

These are declarations only; ``engine.runtime.activities`` implements each
under the same name (a unit test holds the two together). Calling through them
(``workflow.execute_activity(contract.call_model, CallModelInput(...))``) types
the call and its result without importing the implementations, and their
libraries, into the workflow. Names never change: recorded histories name them.
"""

from __future__ import annotations

from temporalio import activity

from engine.runtime.activity_io import (
    CallModelInput,
    CallModelResult,
    CheckCallInput,
    CheckCallResult,
    CloseApprovalInput,
    CloseApprovalResult,
    EvaluatePolicyInput,
    EvaluatePolicyResult,
    ExecuteToolInput,
    ExecuteToolResult,
    GuardInputInput,
    GuardInputResult,
    OpenApprovalsInput,
    OpenApprovalsResult,
    RecordRunInput,
    RecordRunResult,
    ReleaseLeaseInput,
    ReleaseLeaseResult,
    ResolveRunInput,
    ResolveRunResult,
    SettleDecisionInput,
    SettleDecisionResult,
    ValidateCallInput,
    ValidateCallResult,
    ValidateOutputInput,
    ValidateOutputResult,
    VerifiedPerson,
    VerifyPersonInput,
)


@activity.defn(name="resolve_run")
async def resolve_run(request: ResolveRunInput) -> ResolveRunResult:
    """Verify who starts the run and resolve its definition from the worker's own."""
    raise NotImplementedError


@activity.defn(name="verify_person")
async def verify_person(request: VerifyPersonInput) -> VerifiedPerson:
    """Who signed a decision, proven by the worker."""
    raise NotImplementedError


@activity.defn(name="record_run")
async def record_run(record: RecordRunInput) -> RecordRunResult:
    """Record how the run stands (and its result once it ended)."""
    raise NotImplementedError


@activity.defn(name="call_model")
async def call_model(request: CallModelInput) -> CallModelResult:
    """One model step, with the run's own model and tools."""
    raise NotImplementedError


@activity.defn(name="guard_input")
async def guard_input(request: GuardInputInput) -> GuardInputResult:
    """The workflow's input guard."""
    raise NotImplementedError


@activity.defn(name="validate_tool_call")
async def validate_tool_call(request: ValidateCallInput) -> ValidateCallResult:
    """A proposed call's arguments against the limits and the tool's schema."""
    raise NotImplementedError


@activity.defn(name="validate_output")
async def validate_output(request: ValidateOutputInput) -> ValidateOutputResult:
    """A final answer against the workflow's output model."""
    raise NotImplementedError


@activity.defn(name="open_approvals")
async def open_approvals(request: OpenApprovalsInput) -> OpenApprovalsResult:
    """The inbox rows of one interrupt."""
    raise NotImplementedError


@activity.defn(name="close_approval")
async def close_approval(request: CloseApprovalInput) -> CloseApprovalResult:
    """Record how a gated action was decided."""
    raise NotImplementedError


@activity.defn(name="settle_decision")
async def settle_decision(request: SettleDecisionInput) -> SettleDecisionResult:
    """Record what became of a decision that was queued for delivery."""
    raise NotImplementedError


@activity.defn(name="evaluate_policy")
async def evaluate_policy(request: EvaluatePolicyInput) -> EvaluatePolicyResult:
    """Read one call's facts and decide it."""
    raise NotImplementedError


@activity.defn(name="check_call")
async def check_call(request: CheckCallInput) -> CheckCallResult:
    """``validate_tool_call`` and, when the arguments are valid, ``evaluate_policy``: one step per call."""
    raise NotImplementedError


@activity.defn(name="execute_tool")
async def execute_tool(request: ExecuteToolInput) -> ExecuteToolResult:
    """Run an allowed action once."""
    raise NotImplementedError


@activity.defn(name="release_lease")
async def release_lease(request: ReleaseLeaseInput) -> ReleaseLeaseResult:
    """Give back the lease an ``execute_tool`` activity of the run held when it gave up."""
    raise NotImplementedError
