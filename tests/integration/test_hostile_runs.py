"""Hostile or broken input reaching a live run: it ends, with a reason, and nothing executes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from engine.config import Settings
from engine.present import described
from engine.runtime import compiler
from engine.runtime.payloads import RunResult
from engine.runtime.worker import build_worker
from engine.store import repo
from engine.store.db import make_engine
from tests.conftest import DevChainNode
from tests.helpers import refund, run_to_end, start_run, write_spec
from tests.integration.test_treasury import ACME, TOKEN, pay, treasury_spec
from tools import support

pytestmark = pytest.mark.integration
CUSTOMER = {"customer_id": "cus_ana", "message": "please refund"}


@pytest.mark.parametrize("payload", ["hello", [1, 2], 7, None])
async def test_a_payload_that_is_not_an_object_ends_the_run(client: Client, settings: Settings,
                                                           payload: object) -> None:
    async with build_worker(client, settings):
        handle = await client.start_workflow("AgentRunWorkflow", payload, id=f"odd-{uuid.uuid4().hex[:8]}",
                                             task_queue=settings.temporal.task_queue, result_type=RunResult)
        result = await handle.result()
    assert result.status == "failed"
    assert result.reason and result.reason.startswith("malformed run request: expected a JSON object, got ")


async def test_a_bug_inside_the_workflow_fails_the_run_instead_of_looping(
        client: Client, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> dict:
        raise KeyError("refund_id")

    # Workflow-side code the sandbox passes through: a bug there would fail the workflow task, which
    # Temporal retries forever while the run shows "running".
    monkeypatch.setattr(compiler, "initial_state", broken)
    spec = write_spec(tmp_path, [{"content": "never asked"}])
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert (result.status, result.reason) == ("failed", "internal error: KeyError: 'refund_id'")
    with Session(make_engine(settings.db_url)) as session:
        run = repo.get_run(session, run_id=result.run_id)
        timeline = described(repo.run_timeline(session, run_id=result.run_id))
    assert run is not None and (run.status, run.reason) == ("failed", "internal error: KeyError: 'refund_id'")
    assert timeline[-1].kind == "run" and timeline[-1].summary == "run failed — internal error: KeyError: 'refund_id'"


async def test_amounts_a_person_would_misread_never_move_money(client: Client, chain_settings: Settings,
                                                               devchain: DevChainNode, tmp_path: Path) -> None:
    settings = chain_settings
    # "٣" is the Arabic-Indic digit three; the long one rounded to exactly 1 token in Decimal arithmetic.
    spec = treasury_spec(tmp_path, pay(ACME, "\u0663"), pay(ACME, "1.00000000000000000000000000001"),
                         pay(ACME, 2.5), pay(ACME, "1"))
    before = devchain.chain.token_balance(TOKEN, ACME)
    result = await run_to_end(client, settings, spec, {})
    odd, long, number, honest = result.tool_calls
    assert (odd.outcome, number.outcome) == ("invalid", "invalid")
    assert odd.error and "amount" in odd.error and "ASCII digits" in odd.error
    assert long.outcome == "denied" and long.decision is not None
    assert any("does not fit a token with 6 decimals" in r for r in long.decision.reasons)
    assert honest.outcome == "executed"
    assert devchain.chain.token_balance(TOKEN, ACME) - before == 10**6  # the honest 1 tUSD, nothing else


async def test_a_refund_amount_in_another_script_is_refused(client: Client, settings: Settings,
                                                            tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "\u0663")]}, {"content": "done"}])
    result = await run_to_end(client, settings, spec, CUSTOMER)
    [call] = result.tool_calls
    assert call.outcome == "invalid" and call.error and "ASCII digits" in call.error
    with Session(support.ledger(settings.db_url)) as session:
        assert session.exec(select(support.Refund)).all() == []


async def test_tool_arguments_past_the_limits_are_invalid_and_never_run(client: Client, settings: Settings,
                                                                        tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    odd = [
        {"name": "issue_refund", "raw_arguments": json.dumps({"order_id": "A-1001", "amount": "1.00",
                                                              "reason": "x" * 70_000})},
        {"name": "issue_refund", "raw_arguments": '{"order_id": "A-1001", "amount": "1.00", "reason": '
                                                  + "[" * 40 + "]" * 40 + "}"},
        {"name": "issue_refund", "raw_arguments": '{"order_id": "A-1001", "amount": NaN, "reason": "nan"}'},
        {"name": "issue_refund", "raw_arguments": '["A-1001", "1.00", "a list"]'},
        {"name": "issue_refund", "raw_arguments": '{"order_id": "A-1001", "amount": "1.00"'},
    ]
    spec = write_spec(tmp_path, [{"tool_calls": odd}, {"content": "done"}],
                      limits={"max_tool_calls": 10, "max_repairs": 5})
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert result.status == "completed", result.reason
    errors = [c.error for c in result.tool_calls]
    assert [c.outcome for c in result.tool_calls] == ["invalid"] * 5
    assert errors == ["arguments: 70054 bytes; at most 65536 are accepted",
                      "arguments: nested deeper than 32 levels",
                      "arguments: NaN is not a JSON number",
                      "arguments: must be a JSON object, got list",
                      "arguments:1:40: not valid JSON: Expecting ',' delimiter"]
    with Session(support.ledger(settings.db_url)) as session:
        assert session.exec(select(support.Refund)).all() == []


async def test_an_answer_too_large_for_the_record_fails_the_run_with_the_reason(client: Client, settings: Settings,
                                                                               tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    many = [refund("A-1001", "1.00")] * 65
    spec = write_spec(tmp_path, [{"tool_calls": many}], limits={"max_tool_calls": 100})
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert result.status == "failed" and result.reason
    assert "with 65 tool call(s); at most 524288 bytes and 64 calls are accepted" in result.reason
    # another script, so another endpoint: the first one's failures opened its breaker, for every worker
    big = write_spec(tmp_path, [{"content": "x" * 600_000}], "big.yaml", name="refund-big")
    result = await run_to_end(client, settings, big, CUSTOMER)
    assert result.status == "failed" and result.reason
    assert "the answer is 600000 bytes with 0 tool call(s)" in result.reason
    with Session(support.ledger(settings.db_url)) as session:
        assert session.exec(select(support.Refund)).all() == []


async def test_a_conversation_past_what_history_can_carry_ends_the_run(client: Client, settings: Settings,
                                                                       tmp_path: Path) -> None:
    lookup = {"name": "lookup_order", "args": {"order_id": "A-1001"}}
    turns = [{"content": "\u0001" * 70_000, "tool_calls": [lookup]}] * 6  # escaped as \u0001: six bytes each
    spec = write_spec(tmp_path, turns, limits={"max_steps": 10, "max_tool_calls": 10})
    result = await run_to_end(client, settings, spec, CUSTOMER)
    assert result.status == "limit_reached" and result.reason
    assert result.reason.startswith("the conversation is ") and "carries at most 1572864" in result.reason
    with Session(make_engine(settings.db_url)) as session:
        run = repo.get_run(session, run_id=result.run_id)
    assert run is not None and run.status == "limit_reached"


async def test_a_run_the_worker_cannot_resolve_is_recorded_as_refused(client: Client, settings: Settings) -> None:
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec="support_refund",
                                 run_input=CUSTOMER, definition_hash="sha256:" + "0" * 64)
        result = await handle.result()
    assert result.status == "failed" and result.reason and "refused:" in result.reason
    with Session(make_engine(settings.db_url)) as session:
        run = repo.get_run(session, run_id=handle.id)
        assert run is not None and (run.status, run.requested_by) == ("failed", "alice")
        assert run.reason and "refused:" in run.reason and repo.resolved_run(session, run_id=handle.id) is None
