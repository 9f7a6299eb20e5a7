"""``check_call``: a proposed call validated and decided in one step, each part still recorded.

The activity runs in ActivityEnvironment with a real SQLite store and a stand-in OPA (tests/integration run it
against a real OPA and Temporal); the node's reading of its failures is checked on the error Temporal hands it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from engine.runtime.activity_io import UNCHECKED, CheckCallInput
from engine.runtime.nodes import _unchecked
from engine.runtime.payloads import ToolCallRecord
from engine.store import decisions, repo
from tests.unit.runtime.test_recheck import RUN, _env, _setup


def _proposed(raw: dict[str, Any] | str) -> ToolCallRecord:
    return ToolCallRecord(call_id="c0", step=1, index=0, tool="issue_refund",
                          raw_arguments=raw if isinstance(raw, str) else json.dumps(raw))


def _timeline_kinds(acts: Any) -> list[tuple[str, bool]]:
    return [(e.kind, e.data.get("ok")) for e in acts._database.call(repo.run_timeline, run_id=RUN)
            if e.kind == "validation"]


async def test_a_valid_call_is_validated_and_decided_and_both_are_recorded(tmp_path: Path) -> None:
    acts, _, policy = _setup(tmp_path, lambda d: "allow")
    checked = await _env("check-0").run(acts.check_call, CheckCallInput(
        run_id=RUN, call=_proposed({"order_id": "A-1001", "amount": "10.00", "reason": "late"})))
    assert checked.valid.ok and checked.valid.args["order_id"] == "A-1001"
    assert checked.decided is not None and checked.decided.decision.outcome == "allow"
    assert policy.documents[0]["tool"]["args"]["order_id"] == "A-1001"  # decided on the validated arguments
    assert acts._database.call(decisions.actions_decided, run_id=RUN) == 1
    assert _timeline_kinds(acts) == [("validation", True)]


async def test_an_invalid_call_is_not_decided(tmp_path: Path) -> None:
    acts, _, policy = _setup(tmp_path, lambda d: "allow")
    checked = await _env("check-0").run(acts.check_call, CheckCallInput(
        run_id=RUN, call=_proposed({"order_id": "A-1001", "amount": "ten", "reason": "late"})))
    assert not checked.valid.ok and "amount" in (checked.valid.error or "")
    assert checked.decided is None and policy.documents == []
    assert acts._database.call(decisions.actions_decided, run_id=RUN) == 0
    assert _timeline_kinds(acts) == [("validation", False)]


async def test_a_check_that_cannot_be_recorded_is_denied_as_unchecked(tmp_path: Path, monkeypatch: Any) -> None:
    acts, _, policy = _setup(tmp_path, lambda d: "allow")

    def store_down(session: Any, **kwargs: Any) -> None:
        raise ConnectionError("could not connect to server at postgresql://airlock:s3cret-pw@db/airlock")

    monkeypatch.setattr(repo, "record_validation", store_down)
    with pytest.raises(ApplicationError) as raised:
        await _env("check-0").run(acts.check_call, CheckCallInput(
            run_id=RUN, call=_proposed({"order_id": "A-1001", "amount": "10.00", "reason": "late"})))
    assert raised.value.type == UNCHECKED and "ConnectionError" in raised.value.message
    assert "s3cret-pw" not in raised.value.message  # what reaches the history is redacted
    assert policy.documents == []  # not decided on arguments whose check is not on the record
    gave_up = ActivityError("check_call failed", scheduled_event_id=0, started_event_id=0, identity="",
                            activity_type="check_call", activity_id="1",
                            retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED)
    gave_up.__cause__ = raised.value
    denied = _unchecked(_proposed("{}"), gave_up)
    assert denied.outcome == "denied" and denied.decision is not None
    assert denied.decision.reasons[0] == "arguments unchecked" and UNCHECKED in denied.decision.reasons[1]
    facts_down = ApplicationError("node down", type="ChainUnavailableError")
    gave_up.__cause__ = facts_down
    assert _unchecked(_proposed("{}"), gave_up).decision.reasons[0] == "facts unavailable"  # type: ignore[union-attr]
    gave_up.__cause__ = ApplicationError("run r has had 6 actions decided; the workflow allows 6 "
                                         "(limits.max_tool_calls)", type="LimitError")
    over = _unchecked(_proposed("{}"), gave_up).decision
    assert over is not None and over.reasons[0] == "limit reached" and "limits.max_tool_calls" in over.reasons[1]


async def test_a_call_that_claims_an_editor_gets_no_trust_from_the_claim(tmp_path: Path) -> None:
    """Whoever drives the run may say a person edited the call; only the worker's own record of a verified
    edit makes a person a source. A call claiming bob wrote its arguments is traced like any other."""
    acts, _, policy = _setup(tmp_path, lambda d: "allow")
    claimed = _proposed({"order_id": "A-1001", "amount": "10.00", "reason": "late"}).model_copy(
        update={"edited_by": "bob", "editors": ["bob"], "revision": 1})
    checked = await _env("check-0").run(acts.check_call, CheckCallInput(run_id=RUN, call=claimed))
    assert checked.decided is not None
    seen = policy.documents[0]["provenance"]
    assert seen["amount"] == {"sources": [], "trusted": False}
    assert not any(s["from"].startswith("person:") for entry in seen.values() for s in entry["sources"])
