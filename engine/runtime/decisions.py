"""People's decisions on a run's gated actions: the workflow's update and signal handlers and their rules.

``DecisionHandlers`` is a base class of ``AgentRunWorkflow`` (Temporal takes handlers defined on a base
class); it owns the handlers' state (``_taken``, ``_outcomes``, ``_settled``) and reads the run's request
and pending actions, which the workflow owns.

A decision arrives as an update (``decide_approval``, ``edit_action``), whose
answer the person gets at once, or — when no worker took the update in time —
as a signal carrying the same signed payload (``deliver_decision``,
``deliver_edit``), which Temporal records durably even with no worker
polling. Both go through the same checks, the same verification of the person
by the worker and the same rules; a delivery is applied once by its key (the
hash of the whole payload, the assertion spelled canonically) however many
ways it arrives, its assertion is good for one use, each person counts once,
and each delivery, by update or by signal, ends with ``settle_decision``
recording what became of it on the decision's record (the door's queued one,
or the one the worker made when it took the decision).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Literal, NamedTuple

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    # by its full name: ``from engine.runtime import contract`` would load the module afresh inside the
    # sandbox for every run (importlib resolves a from-list's submodule past the sandbox's passthrough)
    import engine.runtime.contract as contract
    from engine.boundary.people import decision_refusal, rejection_problem
    from engine.runtime.activity_io import (
        CloseApprovalInput,
        SettleDecisionInput,
        ValidateCallInput,
        VerifiedPerson,
        VerifyPersonInput,
    )
    from engine.runtime.payloads import (
        ApprovalDecisionInput,
        ApprovalDecisionResult,
        ApprovalEditInput,
        ApprovalVote,
        PendingAction,
        ResolvedRun,
        delivery_key,
    )
    from engine.runtime.state import failure_reason

RECORD_TIMEOUT = timedelta(seconds=30)  # start_to_close of the workflow's own activities
# Since this patch every delivery settles its decision's record itself (the update too, not only a signal).
_SETTLE_EVERY_DELIVERY = "settle-every-delivery"


class _Outcome(NamedTuple):
    """What became of one decision: applied (``detail``: the approval's status then) or refused (why)."""

    applied: bool
    detail: str | None


def _shown_result(result: ApprovalDecisionResult) -> str:
    if result.status == "pending":
        return f"pending: {result.approvals} of {result.needed} approvals"
    return result.status


class DecisionHandlers:
    """The ``decide_approval``/``edit_action`` updates, the ``deliver_*`` signals and the rules they obey."""

    _request: ResolvedRun | None  # the workflow's: the run, once resolved
    _pending: dict[str, PendingAction]  # the workflow's: the actions of the current interrupt

    def __init__(self) -> None:
        self._taken: set[str] = set()  # delivery keys that reached the run (by update or signal)
        self._outcomes: dict[str, _Outcome] = {}  # ... and what became of each, once known
        self._settled: set[str] = set()  # ... and whose outcome is recorded on the decision's record

    async def _close(self, pending: PendingAction) -> None:
        await workflow.execute_activity(
            contract.close_approval, CloseApprovalInput(approval_id=pending.approval_id, run_id=pending.run_id,
                                                        digest=pending.call.digest or "", status=pending.status,
                                                        votes=pending.call.votes, reason=pending.reason),
            start_to_close_timeout=RECORD_TIMEOUT)

    def _person_input(self, payload: ApprovalDecisionInput | ApprovalEditInput) -> VerifyPersonInput:
        """A delivery as the worker checks it: the assertion and everything it must be bound to."""
        action: Literal["approve", "reject", "edit"] = (payload.decision if isinstance(payload, ApprovalDecisionInput)
                                                        else "edit")
        args = payload.args if isinstance(payload, ApprovalEditInput) else None
        return VerifyPersonInput(run_id=self._request.run_id if self._request else "",
                                 approval_id=payload.approval_id, digest=payload.digest, action=action,
                                 assertion=payload.assertion, args=args, comment=payload.comment,
                                 source=payload.source)

    async def _verify(self, payload: ApprovalDecisionInput | ApprovalEditInput) -> VerifiedPerson:
        """Who signed this decision, proven by the worker (signature, expiry, single use, user store), and
        that the assertion is for exactly this payload."""
        try:
            return await workflow.execute_activity(
                contract.verify_person, self._person_input(payload),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3))
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise ApplicationError(cause.message, type=cause.type or "AuthenticationError") from None
            raise ApplicationError(str(cause or exc), type="AuthenticationError") from None

    @workflow.update(name="decide_approval")
    async def decide_approval(self, decision: ApprovalDecisionInput) -> ApprovalDecisionResult:
        """Record one person's approve/reject; quorum turns it into a verdict."""
        return await self._once(decision, lambda: self._apply_decision(decision))

    @decide_approval.validator
    def _check_decision(self, decision: ApprovalDecisionInput) -> None:
        self._check_new(decision)
        self._check_action(decision.approval_id, decision.digest)
        if (problem := rejection_problem(decision.decision, decision.comment)) is not None:
            raise ApplicationError(problem, type="ApprovalError")

    async def _apply_decision(self, decision: ApprovalDecisionInput) -> ApprovalDecisionResult:
        person = await self._verify(decision)
        self._check_person(decision.approval_id, person, decision.digest)  # again: others decided meanwhile
        pending = self._pending[decision.approval_id]
        pending.call.votes.append(ApprovalVote(by=person.name, decision=decision.decision, comment=decision.comment,
                                               at=workflow.now(), digest=decision.digest, source=decision.source))
        needed = pending.call.approvals_needed
        approvals = len({v.by for v in pending.call.votes if v.decision == "approve"})
        if decision.decision == "reject":
            pending.status, pending.reason = "rejected", decision.comment
        elif approvals >= needed:
            pending.status = "approved"
        await self._close(pending)
        # pending.status is "expired" only if the approval timed out while this vote was being closed.
        return ApprovalDecisionResult(approval_id=pending.approval_id, status=pending.status,
                                      approvals=approvals, needed=needed)

    @workflow.update(name="edit_action")
    async def edit_action(self, edit: ApprovalEditInput) -> ApprovalDecisionResult:
        """Replace a gated action's arguments; the new action goes through the whole boundary again."""
        return await self._once(edit, lambda: self._apply_edit(edit))

    @edit_action.validator
    def _check_edit(self, edit: ApprovalEditInput) -> None:
        self._check_new(edit)
        self._check_action(edit.approval_id, edit.digest)

    async def _apply_edit(self, edit: ApprovalEditInput) -> ApprovalDecisionResult:
        pending = self._pending[edit.approval_id]
        valid = await workflow.execute_activity(
            contract.validate_tool_call, ValidateCallInput(run_id=pending.run_id, tool=pending.call.tool,
                                                           raw_arguments=json.dumps(edit.args)),
            start_to_close_timeout=RECORD_TIMEOUT)
        if not valid.ok:  # refused before anything changes (or anyone counts as its editor)
            raise ApplicationError(f"the edited arguments are invalid: {valid.error}", type="ToolArgumentsError")
        person = await self._verify(edit)
        self._check_person(edit.approval_id, person, edit.digest)
        if pending.status != "pending":  # decided while the arguments were being checked
            raise ApplicationError(f"approval {edit.approval_id} is already {pending.status}", type="ApprovalError")
        pending.call.votes.append(ApprovalVote(by=person.name, decision="edit", comment=edit.comment,
                                               at=workflow.now(), digest=edit.digest, source=edit.source))
        pending.status, pending.edited_args, pending.reason = "edited", valid.args, edit.comment
        await self._close(pending)
        return ApprovalDecisionResult(approval_id=pending.approval_id, status="edited", approvals=0,
                                      needed=pending.call.approvals_needed)

    @workflow.signal(name="deliver_decision")
    async def deliver_decision(self, decision: ApprovalDecisionInput) -> None:
        """``decide_approval``'s decision, delivered durably: sent when no worker took the update in time.

        The same checks and the same verified person as the update; it counts once (by its key), and what
        became of it is recorded for the person (``settle_decision``).
        """
        await self._deliver(decision, lambda: self._check_decision(decision), lambda: self._apply_decision(decision))

    @workflow.signal(name="deliver_edit")
    async def deliver_edit(self, edit: ApprovalEditInput) -> None:
        """``edit_action``'s edit, delivered durably (see ``deliver_decision``)."""
        await self._deliver(edit, lambda: self._check_edit(edit), lambda: self._apply_edit(edit))

    def _check_new(self, payload: ApprovalDecisionInput | ApprovalEditInput) -> None:
        """A delivery is applied once, however many ways it arrives (an update the worker took late, and the
        signal sent because it did not take it in time)."""
        if delivery_key(payload) in self._taken:
            raise ApplicationError("this decision has reached the run already; it counts once", type="ApprovalError")

    async def _once(self, payload: ApprovalDecisionInput | ApprovalEditInput,
                    apply: Callable[[], Awaitable[ApprovalDecisionResult]]) -> ApprovalDecisionResult:
        """Apply this delivery unless it reached the run already; record what became of it on the decision's
        record, whichever way it came (the door may have stopped waiting for an update the worker then took,
        and no signal may follow), then remember it."""
        key = delivery_key(payload)
        if key in self._taken:  # the same decision, the other way, at the same time: that one counts
            raise ApplicationError("this decision has reached the run already; it counts once", type="ApprovalError")
        self._taken.add(key)
        try:
            result = await apply()
        except ApplicationError as exc:
            await self._ended(payload, _Outcome(applied=False, detail=exc.message), settle=True)
            raise
        except BaseException as exc:
            reason = failure_reason(exc) if isinstance(exc, ActivityError) else f"{type(exc).__name__}: {exc}"
            await self._ended(payload, _Outcome(applied=False, detail=f"the run could not record it: {reason}"[:2000]),
                              settle=isinstance(exc, Exception))
            raise
        await self._ended(payload, _Outcome(applied=True, detail=_shown_result(result)), settle=True)
        return result

    async def _ended(self, payload: ApprovalDecisionInput | ApprovalEditInput, outcome: _Outcome, *,
                     settle: bool) -> None:
        """A delivery ``_once`` applied or refused: recorded (in runs since every delivery settles; older
        histories settled signals only), then remembered, which a copy that came the other way waits for."""
        if settle and workflow.patched(_SETTLE_EVERY_DELIVERY):
            await self._settle(payload, outcome)
        self._outcomes[delivery_key(payload)] = outcome

    async def _deliver(self, payload: ApprovalDecisionInput | ApprovalEditInput, check: Callable[[], None],
                       apply: Callable[[], Awaitable[ApprovalDecisionResult]]) -> None:
        """A decision that came by signal: apply it (or find how its update went), then record the outcome.

        Nothing raised here may fail the run: every refusal becomes the recorded reason.
        """
        key, through_once = delivery_key(payload), False
        if key in self._taken:  # the update reached the run too: it counts, and says how it went
            await workflow.wait_condition(lambda: key in self._outcomes)
            outcome = self._outcomes[key]
        else:
            try:
                check()
                through_once = True  # from here on ``_once`` records it
                outcome = _Outcome(applied=True, detail=_shown_result(await self._once(payload, apply)))
            except ApplicationError as exc:
                outcome = _Outcome(applied=False, detail=exc.message)
            except ActivityError as exc:
                outcome = _Outcome(applied=False, detail=f"the run could not record it: {failure_reason(exc)}")
            except Exception as exc:  # noqa: BLE001 - a signal handler that raised would fail the workflow task
                outcome = _Outcome(applied=False, detail=f"internal error: {type(exc).__name__}: {exc}"[:2000])
            self._taken.add(key)
            outcome = self._outcomes.setdefault(key, outcome)
        if (through_once or key in self._settled) and workflow.patched(_SETTLE_EVERY_DELIVERY):
            return  # recorded already (older runs recorded each signal here)
        await self._settle(payload, outcome)

    async def _settle(self, payload: ApprovalDecisionInput | ApprovalEditInput, outcome: _Outcome) -> None:
        """Record what became of this delivery on its decision's record (``settle_decision``); the worker
        ignores a delivery its assertion is not bound to. A failure to record is logged, never raised: it
        must not fail the run, nor turn an applied decision into a refused one."""
        key = delivery_key(payload)
        if not outcome.applied:
            workflow.logger.warning("decision %s on %s refused: %s", key, payload.approval_id, outcome.detail)
        if self._request is None:  # not resolved yet: nothing can be recorded for it
            return
        settled = SettleDecisionInput(run_id=self._request.run_id, decision=self._person_input(payload),
                                      status="applied" if outcome.applied else "refused",
                                      reason=None if outcome.applied else outcome.detail,
                                      result=outcome.detail if outcome.applied else None)
        try:
            done = await workflow.execute_activity(contract.settle_decision, settled,
                                                   start_to_close_timeout=RECORD_TIMEOUT)
        except ActivityError as exc:
            workflow.logger.warning("decision %s: its outcome could not be recorded: %s", key, failure_reason(exc))
            return
        if done.settled:  # else there was no record yet: a door may queue one, and its signal settles it
            self._settled.add(key)

    def _check_action(self, approval_id: str, digest: str) -> PendingAction:
        """Rules on the action alone, checked before anything is accepted into history."""
        pending = self._pending.get(approval_id)
        if pending is None:
            raise ApplicationError(f"no pending approval {approval_id} in this run", type="NotFoundError")
        if pending.status != "pending":
            raise ApplicationError(f"approval {approval_id} is already {pending.status}", type="ApprovalError")
        if workflow.now() >= pending.expires_at:
            raise ApplicationError(f"approval {approval_id} expired at {pending.expires_at.isoformat()}",
                                   type="ApprovalError")
        if digest != pending.call.digest:
            raise ApplicationError(f"approval {approval_id} is bound to action {pending.call.digest}; "
                                   f"the decision was made on {digest or 'nothing'}: reload and decide again",
                                   type="ApprovalError")
        return pending

    def _check_person(self, approval_id: str, person: VerifiedPerson, digest: str) -> None:
        """The rules every decision obeys, for a person the worker verified; raising refuses it."""
        pending = self._check_action(approval_id, digest)
        refusal = decision_refusal(person=person.name, roles=person.roles, requester=pending.requested_by,
                                   editors=pending.call.editors,
                                   approvers=pending.call.decision.approvers if pending.call.decision else [])
        if refusal is not None:
            raise ApplicationError(refusal, type="ApprovalError")
        if any(v.by == person.name for v in pending.call.votes):
            raise ApplicationError(f"{person.name} already decided approval {approval_id}", type="ApprovalError")
