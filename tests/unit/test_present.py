"""The sentences a run's timeline reads as, built from the data the store records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.present import described
from engine.store.timeline import TimelineEntry

NOW = datetime.now(UTC)


@pytest.mark.parametrize(("kind", "data", "sentence"), [
    ("model", {"model": "m", "endpoint": "e", "step_class": "cheap", "input_tokens": 3, "output_tokens": 4,
               "cost": 0.5, "tool_calls": 1, "fallback_used": True,
               "attempts": [{"endpoint": "p", "error": "boom"}, {"endpoint": "e"}]},
     "m via e [cheap]: 3 in / 4 out tokens, cost 0.5, 1 tool call(s) proposed — fallback after p: boom"),
    ("validation", {"kind": "tool_arguments", "subject": "issue_refund", "ok": False, "error": "amount: required"},
     "arguments of issue_refund: invalid — amount: required"),
    ("validation", {"kind": "final_answer", "subject": "", "ok": True, "error": None}, "final answer: valid"),
    ("policy", {"tool": "pay", "outcome": "deny", "reasons": ["a", "b"], "revision": "r1"},
     "pay: deny — a; b (revision r1)"),
    ("execution", {"tool": "pay", "status": "succeeded", "error": None, "tx_hash": "0x1"}, "pay: succeeded (tx 0x1)"),
    ("approval", {"approval_id": "ap", "action": "request", "tool": "pay", "min_approvals": 2, "approvers": []},
     "ap requested for pay: needs 2 of anyone"),
    ("approval", {"approval_id": "ap", "action": "approve", "actor": "bob", "comment": "ok"}, "bob approved ap: ok"),
    ("approval", {"approval_id": "ap", "action": "reject", "actor": "bob", "comment": "no"}, "bob rejected ap: no"),
    ("approval", {"approval_id": "ap", "action": "edit", "actor": "bob"}, "bob edited ap"),
    ("run", {"status": "failed", "reason": "boom"}, "run failed — boom"),
])
def test_each_kind_of_entry_reads_as_one_sentence(kind: str, data: dict[str, Any], sentence: str) -> None:
    [line] = described([TimelineEntry(at=NOW, kind=kind, data=data)])
    assert line.summary == sentence and line.data == data
