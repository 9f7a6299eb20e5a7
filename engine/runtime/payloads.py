"""A run's own records as they cross Temporal: our pydantic models, never library objects.

The request that starts a run, each tool call and what the boundary made of
it, people's votes and verdicts, progress and the result. Each activity's
input and result are in ``engine.runtime.activity_io``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.spec import ResolvedSpec

Outcome = Literal[
    "proposed",  # not checked yet (or edited by a person and to be checked again)
    "invalid",  # arguments failed the schema; never reached policy
    "denied",  # policy said no (or could not answer)
    "allowed",  # policy allowed; not yet executed
    "pending_approval",  # waiting for people
    "approved",  # people approved; not yet executed
    "rejected",  # a person rejected it
    "expired",  # nobody decided in time
    "executed",  # ran, with a result
    "failed",  # ran and raised
]
RunStatus = Literal["running", "waiting_approval", "completed", "limit_reached", "failed", "cancelled"]
PolicyOutcome = Literal["allow", "deny", "require_approval"]


class RunRequest(BaseModel):
    """What starts a run: a workflow's name, never its definition. ``run_id`` is the Temporal workflow id.

    The worker resolves the definition itself (``version`` and ``definition_hash`` pin one).
    ``credential`` is the requester's signed assertion (``engine.boundary.identity``); ``requested_by``
    and ``tenant`` must match it.
    """

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1, le=1_000_000)
    definition_hash: str | None = Field(default=None, max_length=100)
    input: dict[str, Any] = Field(default_factory=dict)
    requested_by: str = Field(max_length=64)
    tenant: str = Field(default="default", max_length=64)
    run_id: str = Field(min_length=1, max_length=200)
    credential: str = Field(default="", max_length=4096)


class ResolvedRun(BaseModel):
    """A run as the worker resolved it: its definition and its verified requester."""

    run_id: str
    spec: ResolvedSpec
    requested_by: str
    tenant: str
    input: dict[str, Any] = Field(default_factory=dict)
    workflow_run_id: str | None = None  # the Temporal run that resolved it; its activities serve no other


class PolicyDecision(BaseModel):
    """A normalized OPA decision. ``outcome`` is what the boundary acts on."""

    allow: bool = False
    require_approval: bool = False
    approvers: list[str] = Field(default_factory=list)
    min_approvals: int = 1
    reasons: list[str] = Field(default_factory=list)
    outcome: PolicyOutcome = "deny"
    revision: str | None = None
    decision_id: str | None = None
    # How many times OPA was asked for it: 1, plus one per transient failure retried within the decision
    # budget (``AIRLOCK_OPA__DECISION_BUDGET_S``). A default, so decisions in older workflow histories decode.
    attempts: int = 1


class ApprovalVote(BaseModel):
    """One person's decision on a gated action."""

    by: str
    decision: Literal["approve", "reject", "edit"]
    comment: str | None = None
    at: datetime
    digest: str = ""
    source: str | None = None


class ActionKey(BaseModel):
    """One action of a run, the same across retries, edits and re-checks: its idempotency key.

    Stored and handed to tools as text (``run_id:step:index``); :meth:`parse` reads it back.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    step: int = Field(ge=0)
    index: int = Field(ge=0)

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step}:{self.index}"

    @classmethod
    def parse(cls, text: str) -> ActionKey | None:
        """The key ``text`` spells, or None when it is not one (the run id may itself hold colons)."""
        run_id, _, rest = text.rpartition(":")
        run_id, _, step = run_id.rpartition(":")
        if not run_id or not step.isdigit() or not rest.isdigit():
            return None
        return cls(run_id=run_id, step=int(step), index=int(rest))


class ToolCallRecord(BaseModel):
    """One proposed tool call and everything the boundary did with it."""

    call_id: str
    step: int
    index: int
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str = ""
    reason: str | None = None
    facts: dict[str, Any] = Field(default_factory=dict)
    decision: PolicyDecision | None = None
    outcome: Outcome = "proposed"
    error: str | None = None
    result: Any = None
    approval_id: str | None = None
    digest: str | None = None
    votes: list[ApprovalVote] = Field(default_factory=list)
    revision: int = 0
    edited_by: str | None = None
    editors: list[str] = Field(default_factory=list)  # everyone who edited this action so far
    previous_args: dict[str, Any] | None = None
    rechecks: int = 0
    recheck_reason: str | None = None

    def key(self, run_id: str) -> ActionKey:
        """This action's idempotency key in run ``run_id``."""
        return ActionKey(run_id=run_id, step=self.step, index=self.index)

    @property
    def approvals_needed(self) -> int:
        """How many distinct people must approve: what the policy said, else one."""
        return self.decision.min_approvals if self.decision else 1


class RunResult(BaseModel):
    """How a run ended."""

    run_id: str
    workflow: str
    version: int
    status: RunStatus
    reason: str | None = None
    output: str | None = None
    steps: int = 0
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    usage: dict[str, Any] = Field(default_factory=dict)  # model_calls, tokens, cost
    structured: dict[str, Any] | None = None  # the final answer, validated against spec.output_schema


# --- approvals (update / query) ----------------------------------------------


class ApprovalDecisionInput(BaseModel):
    """The payload of the ``decide_approval`` update.

    ``assertion`` is the person's signed assertion (``engine.boundary.identity``) bound
    to this approval, ``digest`` and ``decision``: who decides, and with which
    roles, comes from it and the user store, never from the caller. ``digest``
    is the action digest the person was shown: a decision on anything else is
    refused. ``source`` says where the decision came from (address, CLI).
    """

    model_config = ConfigDict(extra="forbid")

    approval_id: str
    decision: Literal["approve", "reject"]
    digest: str
    assertion: str
    comment: str | None = Field(default=None, max_length=2000)
    source: str | None = Field(default=None, max_length=200)


class ApprovalEditInput(BaseModel):
    """The payload of the ``edit_action`` update: new arguments for the same tool.

    The edited action is a new action: validated, fact-checked and decided by
    policy again, with a new digest; it needs approval again if policy says so.
    """

    model_config = ConfigDict(extra="forbid")

    approval_id: str
    digest: str
    args: dict[str, Any]
    assertion: str
    comment: str | None = Field(default=None, max_length=2000)
    source: str | None = Field(default=None, max_length=200)


def decision_key(jti: str) -> str:
    """A signed decision's key: the hash of its assertion's id (``jti``), read from the verified assertion
    (``Verifier.signed``; the door that signed it, ``Authority.assertion_id``). The store keeps a queued
    decision under it and the worker finds it there by the same id, never by the assertion's text: one
    signed assertion has several spellings that verify alike."""
    return "dk_" + hashlib.sha256(jti.encode()).hexdigest()[:40]


def canonical_assertion(token: str) -> str:
    """An assertion spelled one way, however its signature segment is written.

    A JWT's signature covers its header and claims exactly as written, but the signature segment itself is
    read leniently (PyJWT pads it and drops characters outside the base64 alphabet): ``token + "=="``
    verifies as ``token`` does. Spelled with the signature's bytes re-encoded, every copy that verifies
    reads the same; anything else (a forgery, another assertion) still differs. Text that is no JWT is
    left as it is (it verifies for nobody).
    """
    signing_input, dot, signature = token.encode().rpartition(b".")
    if not dot or b"." not in signing_input:
        return token
    try:
        raw = base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4))  # as PyJWT reads it
        return (signing_input + b"." + base64.urlsafe_b64encode(raw).rstrip(b"=")).decode()
    except (binascii.Error, ValueError):
        return token


def delivery_key(payload: ApprovalDecisionInput | ApprovalEditInput) -> str:
    """One delivery of a decision, the same whichever way it reaches the run (the update, or the signal sent
    when no worker took the update in time): the hash of the whole payload, its assertion spelled
    canonically (:func:`canonical_assertion`). The run applies a key once.

    The whole payload, not only the assertion: a copy of an assertion on another approval, or with another
    comment, is another delivery, refused on its own merits (the assertion is good for one use). But a
    copy of the same assertion spelled otherwise is the same delivery: the run cannot verify a signature
    itself, and two spellings of one decision must not be judged (or settled) as two.
    """
    fields = payload.model_dump(mode="json")
    fields["assertion"] = canonical_assertion(payload.assertion)
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "dl_" + hashlib.sha256(text.encode()).hexdigest()[:40]


class ApprovalDecisionResult(BaseModel):
    """What a decision led to. ``status`` is how the approval stands once the run applied it, or
    ``queued``: no worker took it in time, so it was accepted for delivery and applies when one is back
    (the run answers only the other statuses; ``engine.runtime.runs`` answers ``queued``)."""

    approval_id: str
    # "expired": the approval timed out while this vote was being recorded (the vote counts for nothing).
    status: Literal["pending", "approved", "rejected", "edited", "expired", "queued"]
    approvals: int
    needed: int
    detail: str | None = None  # for people: what happened to the decision, in a sentence


class WaitingApproval(BaseModel):
    """One gated action as progress shows it: who may decide, and who has."""

    approval_id: str
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    needed: int = 1
    approved_by: list[str] = Field(default_factory=list)
    expires_at: datetime | None = None


class RunProgress(BaseModel):
    """What the ``get_progress`` query answers: where a run is now."""

    status: RunStatus = "running"
    step: int = 0
    activity: str = "starting"  # e.g. "calling the model", "checking transfer_token", "executing transfer_token"
    model: str | None = None
    step_class: str | None = None
    waiting: list[WaitingApproval] = Field(default_factory=list)
    usage: dict[str, Any] = Field(default_factory=dict)


class Verdict(BaseModel):
    """What people made of one gated action: the run resumes its graph with one per approval id."""

    outcome: Literal["approved", "rejected", "expired", "edited", "pending"]
    reason: str | None = None
    args: dict[str, Any] | None = None  # the corrected arguments, when edited
    by: str | None = None  # who decided last (the editor, when edited)
    votes: list[ApprovalVote] = Field(default_factory=list)


class PendingAction(BaseModel):
    """What the ``get_pending_actions`` query answers per gated action."""

    approval_id: str
    run_id: str
    call: ToolCallRecord
    requested_by: str
    expires_at: datetime
    status: Literal["pending", "approved", "rejected", "expired", "edited"] = "pending"
    reason: str | None = None
    edited_args: dict[str, Any] | None = None
