"""What every graph node shares: the state's shape, typed access to it, activity calls and progress.

State is plain data (dicts of our pydantic models' dumps): LangChain message
objects and SQLModel rows never enter it, so every payload round-trips through
Temporal's converter unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypedDict, TypeVar, runtime_checkable

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutError

from engine.runtime.payloads import ResolvedRun, ToolCallRecord

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

QUICK = {"start_to_close_timeout": timedelta(seconds=30),
         "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=5)}


class AgentState(TypedDict, total=False):
    """The graph's state; every value is plain data."""

    request: dict[str, Any]
    messages: list[dict[str, Any]]
    proposed: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    step: int
    usage: dict[str, Any]
    status: str | None
    reason: str | None
    output: str | None
    structured: dict[str, Any] | None
    output_repairs: int
    repairing: bool


# Runs started since this patch take their short steps as local activities (histories before it keep
# scheduling them as activities, and replay as they ran).
LOCAL_STEPS = "short-steps-local"
# A local step whose next retry is further off than this waits on a timer and comes back as a new local
# activity (a new activity id): what a step writes must not depend on its id (Temporal's default: 1 min).
LOCAL_RETRY_THRESHOLD = timedelta(minutes=1)


async def act(declared: Callable[[A], Awaitable[R]], arg: A, opts: dict[str, Any] = QUICK) -> R:
    """Call an activity through its declaration (``engine.runtime.contract``): typed input and result."""
    return await workflow.execute_activity(declared, arg, **opts)


async def act_here(declared: Callable[[A], Awaitable[R]], arg: A, opts: dict[str, Any] = QUICK) -> R:
    """Call a short step (seconds, no heartbeat: resolving, validating, deciding, recording) as a local
    activity: this worker runs it within the workflow task, with the same retries, and the history records
    its result as a marker, without a round trip through the Temporal server per step. A worker that dies
    before the task completes leaves the step to run again on the next worker, as an activity's retry would
    (each of these steps can run again: what it writes is keyed by the run, or rewritten in place)."""
    if not workflow.patched(LOCAL_STEPS):
        return await workflow.execute_activity(declared, arg, **opts)
    try:
        return await workflow.execute_local_activity(declared, arg, **opts,
                                                     local_retry_threshold=LOCAL_RETRY_THRESHOLD)
    except ActivityError:
        raise
    except FailureError as exc:  # a local activity's failure arrives unwrapped: wrap it as an activity's is,
        # so callers handle a step that gave up the same way whichever way it ran
        name = declared.__name__
        raise ActivityError(f"{name} failed", scheduled_event_id=0, started_event_id=0, identity="",
                            activity_type=name, activity_id="", retry_state=None) from exc


def failure_reason(exc: ActivityError) -> str:
    """``Type: message`` of the error that made an activity give up."""
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return f"{exc.activity_type} failed: {cause.type}: {cause.message}"
    if isinstance(cause, TimeoutError) and cause.type is not None:  # the same words, local activity or not
        kind = "".join(word.capitalize() for word in cause.type.name.split("_"))
        return f"{exc.activity_type} failed: activity {kind} timeout"
    return f"{exc.activity_type} failed: {cause or exc}"


def request_of(state: AgentState) -> ResolvedRun:
    return ResolvedRun.model_validate(state["request"])


def records(items: list[dict[str, Any]] | None) -> list[ToolCallRecord]:
    return [ToolCallRecord.model_validate(i) for i in items or []]


def updated(call: ToolCallRecord, **update: Any) -> ToolCallRecord:
    """A validated copy (model_copy would skip validation of nested values)."""
    dumped = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in update.items()}
    return ToolCallRecord.model_validate({**call.model_dump(mode="json"), **dumped})


@runtime_checkable
class ProgressSink(Protocol):
    """What a workflow running this graph offers its nodes: a place to say where the run is."""

    def note_progress(self, **fields: Any) -> None: ...


def note_progress(**fields: Any) -> None:
    """Tell the running workflow what the graph is doing now (answers its ``get_progress`` query)."""
    try:
        instance = workflow.instance()
    except RuntimeError:  # not inside a workflow (a node called directly)
        return
    if isinstance(instance, ProgressSink):
        instance.note_progress(**fields)
