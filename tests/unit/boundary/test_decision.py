"""Decision normalization fails closed; digests bind exactly what was approved."""

from __future__ import annotations

import json

import pytest

from engine.boundary import (
    action_digest,
    approval_id,
    idempotency_key,
    normalize_decision,
    policy_document,
    tool_message,
    with_approvers,
)
from engine.runtime.payloads import PolicyDecision, ResolvedRun, ToolCallRecord
from engine.spec import ModelSpec, ResolvedSpec


@pytest.mark.parametrize("raw, outcome", [
    ({"allow": True}, "allow"),
    ({"allow": True, "require_approval": True, "approvers": ["ops"], "min_approvals": 2}, "require_approval"),
    ({"allow": False, "require_approval": True}, "require_approval"),
    ({"allow": False}, "deny"),
    ({}, "deny"),
])
def test_normalize_decision_outcomes(raw: dict, outcome: str) -> None:
    assert normalize_decision(raw, "rev").outcome == outcome


@pytest.mark.parametrize("raw", [
    None, [], "allow", {"allow": "true"}, {"allow": 1}, {"allow": True, "reasons": "fine"},
    {"allow": True, "min_approvals": 0}, {"allow": True, "min_approvals": True},
    {"allow": True, "approvers": "ops"}, {"allow": True, "reasons": [1]},
])
def test_malformed_or_undefined_decision_denies(raw: object) -> None:
    decision = normalize_decision(raw, "rev")
    assert decision.outcome == "deny" and not decision.allow
    assert decision.reasons[0] == "policy unavailable"


def test_reasons_are_sorted_and_revision_kept() -> None:
    decision = normalize_decision({"allow": False, "reasons": ["b", "a"]}, "sha256:x")
    assert decision.reasons == ["a", "b"] and decision.revision == "sha256:x"


def test_digest_changes_with_each_bound_part() -> None:
    base = action_digest("issue_refund", {"amount": "10"}, {"balance": 5}, "r1")
    assert base == action_digest("issue_refund", {"amount": "10"}, {"balance": 5}, "r1")
    assert base != action_digest("lookup_order", {"amount": "10"}, {"balance": 5}, "r1")
    assert base != action_digest("issue_refund", {"amount": "11"}, {"balance": 5}, "r1")
    assert base != action_digest("issue_refund", {"amount": "10"}, {"balance": 6}, "r1")
    assert base != action_digest("issue_refund", {"amount": "10"}, {"balance": 5}, "r2")


def _call(**kw: object) -> ToolCallRecord:
    return ToolCallRecord(call_id="c", step=3, index=0, tool="issue_refund", args={"amount": "5"}, **kw)


def test_policy_document_has_the_contract_shape() -> None:
    spec = ResolvedSpec(name="w", version=2, model=ModelSpec(), system_prompt="p", policy="airlock.w", source="w.yaml",
                        prompt_text="p", prompt_hash="0" * 64, tool_specs=[], output_json_schema=None,
                        definition_hash="sha256:" + "0" * 64)
    request = ResolvedRun(spec=spec, input={"customer_id": "c1"}, requested_by="alice", tenant="acme", run_id="r")
    previous = [{"call_id": "c0", "tool": "issue_refund", "args": {"amount": "5"}, "outcome": "executed",
                 "result": {"refund_id": "re_1"}, "trusted": False},
                {"call_id": "c1", "tool": "issue_refund", "args": {"amount": "900"}, "outcome": "denied",
                 "result": None, "trusted": False}]
    provenance = {"amount": {"sources": [], "trusted": False}}
    doc = policy_document(request, _call(facts={"x": 1}), consequential=True, previous=previous, provenance=provenance)
    assert doc["version"] == 2 and doc["provenance"] == provenance
    assert doc["run"]["previous"] == previous  # denied calls too, each with its outcome
    assert doc["workflow"] == {"name": "w", "version": 2, "run_id": "r"}
    assert doc["actor"] == {"requested_by": "alice", "tenant": "acme"}
    assert doc["tool"] == {"name": "issue_refund", "consequential": True, "args": {"amount": "5"}}
    assert doc["facts"] == {"x": 1}
    assert doc["run"]["calls"] == {"issue_refund": 1} and doc["run"]["step"] == 3  # executed ones only
    assert doc["run"]["input"] == {"customer_id": "c1"}


@pytest.mark.parametrize("outcome, error, expected", [
    ("denied", None, "denied by policy: too big"),
    ("rejected", "no", "rejected by approver: no"),
    ("expired", None, "approval expired: nobody approved this action in time"),
    ("invalid", "amount: bad", "invalid arguments: amount: bad"),
    ("failed", "boom", "tool failed: boom"),
])
def test_tool_message_tells_the_model_why(outcome: str, error: str | None, expected: str) -> None:
    call = _call(outcome=outcome, error=error, decision=PolicyDecision(reasons=["too big"]))
    assert json.loads(tool_message(call)) == {"ok": False, "error": expected}


def test_tool_message_for_executed_carries_result() -> None:
    assert json.loads(tool_message(_call(outcome="executed", result={"id": 1}))) == {"ok": True, "result": {"id": 1}}


@pytest.mark.parametrize("approvers, role, outcome, expected", [
    (["treasury-ops"], "support-leads", "require_approval", ["treasury-ops"]),  # the policy's own wins
    ([], "support-leads", "require_approval", ["support-leads"]),  # the spec's approval.approver_role
    ([], None, "deny", []),  # nobody may approve: a denial, never "anyone"
])
def test_with_approvers_falls_back_to_the_spec_then_denies(approvers: list[str], role: str | None, outcome: str,
                                                           expected: list[str]) -> None:
    asked = PolicyDecision(require_approval=True, approvers=approvers, outcome="require_approval", revision="r1")
    decided = with_approvers(asked, role)
    assert decided.outcome == outcome and decided.approvers == expected
    if outcome == "deny":
        assert decided.reasons[0] == "policy unavailable" and "names no approvers" in decided.reasons[1]


def test_approval_ids_differ_per_edit_and_recheck_but_the_key_does_not() -> None:
    first, edited, rechecked = _call(), _call(revision=1), _call(rechecks=1)
    assert len({approval_id("r", c) for c in (first, edited, rechecked)}) == 3
    assert {idempotency_key("r", c) for c in (first, edited, rechecked)} == {"r:3:0"}
