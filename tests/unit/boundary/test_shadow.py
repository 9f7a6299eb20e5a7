"""Shadow evaluation's pure parts: which transitions --fail-on names, and how a report counts changes."""

from __future__ import annotations

import pytest

from engine.boundary.shadow import Item, Report, ShadowError, parse_transitions
from engine.runtime.payloads import PolicyDecision


def test_fail_on_names_transitions_with_wildcards() -> None:
    assert parse_transitions(["deny->allow"]) == {"deny->allow"}
    assert parse_transitions(["*->allow"]) == {"deny->allow", "require_approval->allow"}
    assert parse_transitions(["allow->*", "deny->allow"]) == {"allow->deny", "allow->require_approval",
                                                              "deny->allow"}
    assert len(parse_transitions(["any"])) == 6 and parse_transitions([]) == set()


@pytest.mark.parametrize("value", ["deny", "deny->", "deny->ok", "allow=>deny", "->allow"])
def test_fail_on_refuses_what_is_not_a_transition(value: str) -> None:
    with pytest.raises(ShadowError, match=f"--fail-on '{value}'"):
        parse_transitions([value])


def _item(n: int, outcome: str, reasons: list[str]) -> Item:
    return Item(decision_id=f"d{n}", run_id=f"r{n}", workflow="w", tool="issue_refund", package="p",
                outcome=outcome, reasons=reasons, input={"tool": {"name": "issue_refund", "args": {"n": n}}})


def test_report_counts_same_changed_and_reason_only_changes() -> None:
    report = Report(revision="sha256:x")
    report.add(_item(1, "allow", ["ok"]), PolicyDecision(outcome="allow", reasons=["ok"]))
    report.add(_item(2, "allow", ["ok"]), PolicyDecision(outcome="allow", reasons=["fine"]))
    report.add(_item(3, "require_approval", ["big"]), PolicyDecision(outcome="allow", reasons=[]))
    report.add(_item(4, "deny", ["no"]), PolicyDecision(outcome="allow", reasons=[]))
    assert (report.decided, report.same, report.reasons_changed) == (4, 2, 1)
    assert dict(report.transitions) == {"require_approval->allow": 1, "deny->allow": 1}
    assert [c.args for c in report.changes] == [{"n": 3}, {"n": 4}]
    assert report.failing({"deny->allow", "allow->deny"}) == {"deny->allow": 1}
    assert report.as_json()["changes"][1]["transition"] == "deny->allow"
