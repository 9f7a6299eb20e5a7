"""Who starts a run and who decides its actions, proven in the worker."""

from __future__ import annotations

import asyncio

from temporalio import activity

from engine.boundary.identity import Assertion, args_hash, note_hash
from engine.boundary.people import decision_refusal
from engine.errors import AirlockError, ApprovalError, AuthenticationError, DefinitionError
from engine.runtime.activities._base import ActivitiesBase, activity_key, application_error
from engine.runtime.activity_io import (
    ResolveRunInput,
    ResolveRunResult,
    SettleDecisionInput,
    SettleDecisionResult,
    VerifiedPerson,
    VerifyPersonInput,
)
from engine.runtime.payloads import ResolvedRun, decision_key
from engine.spec import shown_spec
from engine.store import authority, decisions, repo, users
from engine.store.users import Approver


class PeopleActivities(ActivitiesBase):
    """``resolve_run`` (the requester and the definition), ``verify_person`` (a decision's signer) and
    ``settle_decision`` (what became of a decision queued for delivery)."""

    @activity.defn(name="resolve_run")
    async def resolve_run(self, request: ResolveRunInput) -> ResolveRunResult:
        """Verify who starts the run, resolve its definition from this worker's own, and record both."""
        req, info = request.request, activity.info()
        try:
            if info.workflow_id != req.run_id:
                raise AuthenticationError(f"run {req.run_id} can only be resolved by its own workflow")
            claims = self._verifier.verify(req.credential)
            if claims.action != "start" or claims.run_id != req.run_id or claims.workflow != req.workflow:
                raise AuthenticationError(f"the signed assertion is not for starting run {req.run_id} of "
                                          f"{req.workflow}")
            if (claims.input_hash, claims.version, claims.pin) != (args_hash(req.input), req.version,
                                                                   req.definition_hash):
                raise AuthenticationError("the signed assertion is for another input, version or definition pin")
            if (claims.subject, claims.tenant) != (req.requested_by, req.tenant):
                raise AuthenticationError(f"the request says {req.requested_by!r} in tenant {req.tenant!r}; "
                                          f"the signed assertion says {claims.subject!r} in {claims.tenant!r}")
            person = await self._member(claims.subject, req.tenant)
            try:
                spec = await asyncio.to_thread(self._registry.resolve, req.workflow, version=req.version,
                                               pin=req.definition_hash)
            except Exception as exc:  # noqa: BLE001 - a broken definition: retrying cannot mend it
                refusal = exc if isinstance(exc, DefinitionError) else DefinitionError(
                    f"{req.workflow}: its definition cannot be read: {type(exc).__name__}: {exc}")
                # The requester is proven: the run they were told started shows why it ended.
                await self._db(repo.record_refused_run, run_id=req.run_id, workflow=req.workflow,
                               requested_by=person.name, tenant=req.tenant, workflow_run_id=info.workflow_run_id,
                               reason=f"refused: {refusal}")
                raise refusal from None
            run = ResolvedRun(run_id=req.run_id, spec=spec, requested_by=person.name, tenant=req.tenant,
                              input=req.input, workflow_run_id=info.workflow_run_id)
            # The record and the workflow's history get the definition without endpoint keys; this worker
            # keeps its own copy (and another finds it again by hash, see ``ActivitiesBase._run``).
            shown = run.model_copy(update={"spec": shown_spec(spec)})
            # The start assertion is used by this workflow run's start, whatever its attempt or activity id
            # (a local activity that retries past its local threshold comes back under a new id).
            await self._db(repo.admit_run, run=shown, jti=claims.jti, roles=person.roles,
                           used_by=f"{info.workflow_run_id}:start")
        except AirlockError as exc:
            raise application_error(exc) from exc
        self._remember(run)
        return ResolveRunResult(run=shown)

    async def _member(self, name: str, tenant: str) -> Approver:
        """The user an assertion names, from the user store, who must belong to ``tenant``.

        Raises:
            AuthenticationError: no such (enabled) user, or not one of the tenant's.
        """
        person = await self._db(users.get_user, name=name)
        if person is None or person.name != name:
            raise AuthenticationError(f"no user {name!r}")
        if tenant not in person.tenants:
            raise AuthenticationError(f"{person.name} does not belong to tenant {tenant!r}")
        return person

    @activity.defn(name="verify_person")
    async def verify_person(self, request: VerifyPersonInput) -> VerifiedPerson:
        """Check a person's signed assertion for one decision; roles and tenants come from the user store.

        The signature is checked first; the decision's record is then found by the assertion's id (never by
        its text, which has several spellings that verify). A decision its door queued for delivery (no
        worker took it in time) is judged as of when it was queued: its assertion must have been valid
        then. One the door withdrew (it told the person it did not count) or whose refusal is recorded is
        refused. Before it counts, the decision is recorded as taken (``claim_delivery``), also when no
        door queued it: a door that queues it afterwards can then no longer withdraw it.
        """
        run = await self._run(request.run_id)
        try:
            claims = self._verifier.signed(request.assertion)
            key = decision_key(claims.jti)
            queued = await self._db(repo.queued_decision, key=key)
            if queued is not None and (queued.approval_id, queued.run_id) != (request.approval_id, run.run_id):
                queued = None  # recorded for another approval: the binding below refuses this copy
            if queued is not None and queued.status in ("withdrawn", "refused"):
                raise ApprovalError(f"this decision was {queued.status}: {queued.reason}; decide again")
            self._verifier.unexpired(claims, at=queued.queued_at if queued else None)
            _check_bound(claims, request)
            decided = await self._db(decisions.decision_for_approval, approval_id=request.approval_id)
            if decided is None or decided.run_id != run.run_id or decided.digest != request.digest:
                raise AuthenticationError(f"approval {request.approval_id} on {request.digest} was not asked "
                                          "for by this run's policy")
            person = await self._member(claims.subject, run.tenant)
            editors = await self._db(authority.editors_of, idempotency_key=decided.idempotency_key or "")
            refusal = decision_refusal(person=person.name, roles=person.roles, requester=run.requested_by,
                                       editors=editors, approvers=list(decided.result.get("approvers") or []))
            if refusal is not None:  # refused before it is recorded: a refused person leaves no vote behind
                raise ApprovalError(refusal)
            # The door and this worker race for it: it counts only if the door did not withdraw it first.
            claimed = await self._db(repo.claim_delivery, key=key, approval_id=request.approval_id,
                                     run_id=run.run_id, by=person.name, action=request.action,
                                     digest=request.digest, comment=request.comment, args=request.args,
                                     source=request.source)
            if (claimed.approval_id, claimed.run_id) != (request.approval_id, run.run_id):
                raise ApprovalError("this decision is recorded for another approval; decide again")
            if claimed.status in ("withdrawn", "refused"):
                raise ApprovalError(f"this decision was {claimed.status}: {claimed.reason}; decide again")
            await self._db(authority.use_assertion, jti=claims.jti, run_id=run.run_id,
                           approval_id=request.approval_id, idempotency_key=decided.idempotency_key or "",
                           digest=request.digest, action=request.action, subject=person.name, roles=person.roles,
                           used_by=activity_key())
        except AirlockError as exc:
            raise application_error(exc) from exc
        return VerifiedPerson(name=person.name, roles=person.roles, tenants=person.tenants)

    @activity.defn(name="settle_decision")
    async def settle_decision(self, request: SettleDecisionInput) -> SettleDecisionResult:
        """Record what the run made of a decision on its record (queued by a door, or taken by a worker).

        Only a delivery its verified assertion is bound to speaks for the decision: a copy with another
        comment, say, was refused on its own and changes nothing here. Its expiry does not matter.
        """
        run = await self._run(request.run_id)
        decision = request.decision
        try:
            claims = self._verifier.signed(decision.assertion)
            _check_bound(claims, decision)
        except AirlockError:
            return SettleDecisionResult(settled=False)  # not this person's decision: it speaks for none
        key = decision_key(claims.jti)
        queued = await self._db(repo.queued_decision, key=key)
        if queued is None or (queued.approval_id, queued.run_id) != (decision.approval_id, run.run_id):
            return SettleDecisionResult(settled=False)  # never recorded (refused before a worker took it)
        await self._db(repo.settle_decision, key=key, status=request.status, reason=request.reason,
                       result=request.result)
        return SettleDecisionResult(settled=True)


def _check_bound(claims: Assertion, request: VerifyPersonInput) -> None:
    """That a verified assertion is for exactly this delivery: action, run, approval, digest, comment and
    source, and for an edit its arguments.

    Raises:
        AuthenticationError: it is for something else.
    """
    bound = (claims.action, claims.run_id, claims.approval_id, claims.digest)
    if bound != (request.action, request.run_id, request.approval_id, request.digest):
        raise AuthenticationError(f"the signed assertion is for {claims.action} of {claims.approval_id} on "
                                  f"{claims.digest}, not {request.action} of {request.approval_id} on "
                                  f"{request.digest}")
    if request.action == "edit" and claims.args_hash != args_hash(request.args or {}):
        raise AuthenticationError("the signed assertion is for other arguments than this edit's")
    if claims.note_hash != note_hash(request.comment, request.source):
        raise AuthenticationError("the signed assertion is for another comment or source than this decision's")
