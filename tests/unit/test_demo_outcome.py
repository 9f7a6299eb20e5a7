"""``airlock demo`` checks that it went as told: a failed payment makes it exit non-zero, saying which."""

from __future__ import annotations

import pytest

from engine.errors import StackError
from engine.local.demo import _expect
from engine.runtime.payloads import RunResult, ToolCallRecord


def _result(*outcomes: tuple[str, str | None], status: str = "completed") -> RunResult:
    calls = [ToolCallRecord(call_id=f"c{i}", step=i, index=0, tool="transfer_token", outcome=outcome, error=error)
             for i, (outcome, error) in enumerate(outcomes)]
    return RunResult(run_id="r", workflow="treasury-payout", version=1, status=status, tool_calls=calls)


def test_the_demo_as_told_passes() -> None:
    _expect(_result(("executed", None), ("denied", None)), set(), ["executed", "denied"])


def test_a_failed_payment_is_named_with_its_error() -> None:
    unique = "IntegrityError: UNIQUE constraint failed: chain_transactions.tx_hash"
    with pytest.raises(StackError) as raised:
        _expect(_result(("failed", unique), ("executed", None), ("denied", None)), set(),
                ["executed", "executed", "denied"])
    assert (f"its calls ended transfer_token failed ({unique}), transfer_token executed, transfer_token denied, "
            "not executed, executed, denied") in str(raised.value)


def test_a_failed_call_fails_the_demo_even_without_expected_outcomes() -> None:
    with pytest.raises(StackError, match=r"transfer_token failed \(node down\)"):
        _expect(_result(("executed", None), ("failed", "node down")), set())


def test_other_differences_and_the_run_status_are_reported() -> None:
    with pytest.raises(StackError) as raised:
        _expect(_result(status="failed"), {"Acme Hosting Ltd received 0 tUSD, not 250"}, [])
    assert "Acme Hosting Ltd received 0 tUSD, not 250" in str(raised.value)
    assert "the run ended failed" in str(raised.value)
