"""The run's records: the action key a tool, the store and the timeline share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.boundary import idempotency_key
from engine.runtime.payloads import ActionKey, ToolCallRecord


def test_a_call_s_key_is_what_tools_and_the_store_are_given() -> None:
    call = ToolCallRecord(call_id="c1", step=3, index=1, tool="transfer_token")
    assert idempotency_key("run-7", call) == "run-7:3:1"
    assert ActionKey.parse("run-7:3:1") == call.key("run-7")


@given(run_id=st.text(min_size=1, max_size=80),
       step=st.integers(0, 10**6), index=st.integers(0, 1000))
def test_every_key_reads_back_even_when_the_run_id_holds_colons(run_id: str, step: int, index: int) -> None:
    key = ActionKey(run_id=run_id, step=step, index=index)
    assert ActionKey.parse(str(key)) == key


@pytest.mark.parametrize("text", ["", "run", "run:3", ":3:1", "run:x:1", "run:3:", "run:-3:1", "run:3:1a"])
def test_text_that_is_no_key_reads_as_none(text: str) -> None:
    assert ActionKey.parse(text) is None


def test_a_key_is_frozen() -> None:
    key = ActionKey(run_id="r", step=1, index=0)
    with pytest.raises(ValueError):
        key.step = 2  # type: ignore[misc]
