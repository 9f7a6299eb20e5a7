"""The JSON Schemas of the policy contract (docs/) are valid, accept what the engine builds and refuse
what it never sends: a missing field, a wrong type, a field it does not know."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from engine.boundary import normalize_decision
from engine.runtime.activities._policy_input import policy_input
from engine.runtime.payloads import ResolvedRun, ToolCallRecord
from engine.spec import ModelSpec, ResolvedSpec
from engine.store.calls import Edit, PastCall
from engine.toolkit import ToolDef

DOCS = Path(__file__).resolve().parents[3] / "docs"
INPUT_SCHEMA = json.loads((DOCS / "policy-input.schema.json").read_text())
DECISION_SCHEMA = json.loads((DOCS / "policy-decision.schema.json").read_text())
INPUT = Draft202012Validator(INPUT_SCHEMA)
DECISION = Draft202012Validator(DECISION_SCHEMA)


class _Args(BaseModel):
    order_id: str
    amount: str
    notify: bool


def _document(approved_by: list[str] | None = None) -> dict[str, Any]:
    """A policy input as the worker builds it: an earlier lookup, a rejected refund, an edit by bob."""
    spec = ResolvedSpec(name="support-refund", version=1, model=ModelSpec(), system_prompt="Refund within policy.",
                        policy="airlock.support_refund", source="w.yaml", prompt_text="Refund within policy.",
                        prompt_hash="0" * 64, tool_specs=[], output_json_schema=None,
                        definition_hash="sha256:" + "0" * 64)
    run = ResolvedRun(spec=spec, input={"customer_id": "cus_ana", "message": "refund A-1002 please"},
                      requested_by="alice", tenant="default", run_id="support-refund-0123456789ab")
    past = [PastCall(key="k1", call_id="call_1_0", tool="lookup_order", args={"order_id": "A-1002"},
                     outcome="executed", result={"order_id": "A-1002", "total": "320.00"}, args_trusted=True),
            PastCall(key="k2", call_id="call_2_0", tool="issue_refund",
                     args={"order_id": "A-1002", "amount": "900.00"}, outcome="rejected")]
    call = ToolCallRecord(call_id="call_3_0", step=3, index=0, tool="issue_refund",
                          args={"order_id": "A-1002", "amount": "40.00", "notify": True},
                          facts={"order": {"exists": True, "refundable": "320.00"}})
    tool = ToolDef(import_path="tools.support:issue_refund", name="issue_refund", func=lambda: None,
                   args_model=_Args, consequential=True, description="", facts=None)
    return policy_input(run, call, tool, past, lambda name: name == "lookup_order", approved_by,
                        [Edit(by="bob", args={"amount": "40.00"})])


def _errors(validator: Draft202012Validator, document: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(document)]


@pytest.mark.parametrize("schema", [INPUT_SCHEMA, DECISION_SCHEMA])
def test_the_schemas_are_valid_draft_2020_12(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("approved_by", [None, [], ["bob", "carol"]])
def test_an_input_the_engine_builds_is_valid(approved_by: list[str] | None) -> None:
    document = json.loads(json.dumps(_document(approved_by)))
    assert _errors(INPUT, document) == []
    assert document["provenance"]["amount"]["sources"][0]["from"] == "person:bob"
    assert "notify" not in document["provenance"]  # booleans are not traced


_DROP = object()


@pytest.mark.parametrize("path, value", [
    ("run", _DROP), ("approved", _DROP), ("tool/args", _DROP), ("actor/tenant", _DROP),
    ("run/previous/0/outcome", _DROP), ("provenance/amount/trusted", _DROP),
    ("provenance/amount/sources/0/call_id", _DROP),
    ("version", 1), ("version", "2"), ("tool/consequential", "yes"), ("tool/args", []), ("workflow/version", "1"),
    ("workflow/name", "Support Refund"), ("run/step", 0), ("run/calls/lookup_order", "1"), ("run/previous", {}),
    ("run/previous/1/outcome", "cancelled"), ("run/previous/0/trusted", "yes"), ("facts", None),
    ("approved", {"by": "bob"}), ("approved", True), ("provenance/amount/sources/0/from", "model"),
    ("provenance/amount/trusted", None), ("extra", 1), ("actor/role", "admin"), ("run/previous/0/error", "boom"),
])
def test_a_wrong_input_is_refused(path: str, value: Any) -> None:
    document = json.loads(json.dumps(_document()))
    *parents, last = path.split("/")
    target: Any = document
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DROP:
        del target[last]
    else:
        target[last] = value
    assert _errors(INPUT, document), f"the schema accepted {path} = {value!r}, which the engine never sends"


# What the policies may answer: the schema accepts exactly what the engine takes as a well-formed decision
# (one exception: JSON Schema cannot tell 2.0 from 2, which the engine refuses).
@pytest.mark.parametrize("raw", [
    {}, {"allow": True}, {"allow": False, "reasons": ["no"]},
    {"allow": True, "require_approval": True, "approvers": ["ops"], "min_approvals": 2, "reasons": ["big"]},
    {"allow": True, "note": "other keys are ignored"},
    {"allow": "true"}, {"allow": 1}, {"require_approval": None}, {"allow": True, "reasons": "fine"},
    {"allow": True, "reasons": [1]}, {"allow": True, "approvers": "ops"}, {"allow": True, "approvers": [None]},
    {"allow": True, "min_approvals": 0}, {"allow": True, "min_approvals": True}, {"allow": True, "min_approvals": "2"},
    [], "allow", None,
])
def test_the_decision_schema_agrees_with_the_engine(raw: Any) -> None:
    engine_accepts = "policy unavailable" not in normalize_decision(raw, "rev").reasons
    assert (not _errors(DECISION, raw)) == engine_accepts
