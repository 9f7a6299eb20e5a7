"""Policy input documents, decision normalization and action digests (pure)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from engine.runtime.payloads import PolicyDecision, PolicyOutcome, ResolvedRun, ToolCallRecord

POLICY_INPUT_VERSION = 2  # 2: run.previous holds every earlier call with its outcome and result; provenance
UNAVAILABLE = "policy unavailable"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal data, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def policy_document(
    request: ResolvedRun,
    call: ToolCallRecord,
    *,
    consequential: bool,
    previous: list[dict[str, Any]],
    provenance: dict[str, Any],
    approved_by: list[str] | None = None,
) -> dict[str, Any]:
    """The OPA input for one proposed call (shape in the README's policy contract).

    ``request`` is the run as the worker resolved and recorded it; ``previous`` every earlier call of the
    run the policy decided, oldest first (``{call_id, tool, args, outcome, result, trusted}``: denied and
    rejected ones too; ``result`` only of an execution that succeeded, ``trusted`` what its tool vouches
    for), from the store; ``provenance`` where each argument value occurs among what the run has seen
    (``engine.boundary.provenance``): nothing here comes from whoever started or drives the run.
    ``approved_by``: at the re-check right before execution, the verified people who approved exactly
    these arguments (``approved`` is null at the first decision).
    """
    return {
        "version": POLICY_INPUT_VERSION,
        "workflow": {"name": request.spec.name, "version": request.spec.version, "run_id": request.run_id},
        "actor": {"requested_by": request.requested_by, "tenant": request.tenant},
        "tool": {"name": call.tool, "consequential": consequential, "args": call.args},
        "facts": call.facts,
        "provenance": provenance,
        "run": {
            "step": call.step,
            "input": request.input,
            "calls": dict(Counter(c["tool"] for c in previous if c["outcome"] == "executed")),
            "previous": previous,
        },
        "approved": None if approved_by is None else {"by": approved_by},
    }


def unavailable_decision(detail: str, revision: str | None = None) -> PolicyDecision:
    """Fail closed: the decision used when OPA cannot give a well-formed one."""
    return PolicyDecision(outcome="deny", reasons=[UNAVAILABLE, detail], revision=revision)


def normalize_decision(result: Any, revision: str | None) -> PolicyDecision:
    """Turn OPA's ``result`` into a decision, denying anything malformed.

    ``require_approval`` wins over ``allow``; neither means deny. An undefined
    result (``None``) or a field of the wrong type is "policy unavailable".
    """
    if not isinstance(result, dict):
        return unavailable_decision("decision is undefined", revision)
    allow, approval = result.get("allow", False), result.get("require_approval", False)
    approvers, minimum = result.get("approvers", []), result.get("min_approvals", 1)
    reasons = result.get("reasons", [])
    if isinstance(reasons, (set, tuple)):
        reasons = list(reasons)
    well_formed = (
        isinstance(allow, bool)
        and isinstance(approval, bool)
        and isinstance(approvers, list)
        and all(isinstance(a, str) for a in approvers)
        and isinstance(minimum, int)
        and not isinstance(minimum, bool)
        and minimum >= 1
        and isinstance(reasons, list)
        and all(isinstance(r, str) for r in reasons)
    )
    if not well_formed:
        return unavailable_decision(f"decision is malformed: {canonical_json(result)[:200]}", revision)
    outcome: PolicyOutcome = "require_approval" if approval else ("allow" if allow else "deny")
    return PolicyDecision(
        allow=allow,
        require_approval=approval,
        approvers=approvers,
        min_approvals=minimum,
        reasons=sorted(reasons),
        outcome=outcome,
        revision=revision,
    )


def action_digest(tool: str, args: dict[str, Any], facts: dict[str, Any], revision: str | None) -> str:
    """What an approval is bound to: tool, canonical args, facts, policy revision."""
    body = canonical_json({"tool": tool, "args": args, "facts": facts, "revision": revision})
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def with_approvers(decision: PolicyDecision, approver_role: str | None) -> PolicyDecision:
    """Who approves when the policy asks for approval but names nobody: the workflow's
    ``approval.approver_role``; with neither, nobody may, so it is a denial."""
    if decision.outcome != "require_approval" or decision.approvers:
        return decision
    if approver_role:
        return decision.model_copy(update={"approvers": [approver_role]})
    return unavailable_decision("the policy asks for approval but names no approvers, and the workflow has no "
                                "approval.approver_role", decision.revision)


def idempotency_key(run_id: str, call: ToolCallRecord) -> str:
    """One action of a run as text, the same across retries, edits and re-checks (see ``ActionKey``)."""
    return str(call.key(run_id))


def approval_id(run_id: str, call: ToolCallRecord) -> str:
    """A stable, short id for the approval of one call (a new one per edit and re-check)."""
    key = idempotency_key(run_id, call) + (f":{call.revision}" if call.revision else "") + \
        (f"/r{call.rechecks}" if call.rechecks else "")
    return "apr_" + hashlib.sha256(key.encode()).hexdigest()[:12]
