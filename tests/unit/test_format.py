"""Arguments rendered legibly: amounts with units, checksummed addresses, labels from policy data."""

from __future__ import annotations

from typing import Any

from engine.ui.format import argument_rows, fact_rows


def test_amount_gets_currency_from_facts_and_ids_get_labels() -> None:
    rows = argument_rows({"order_id": "A-1002", "amount": "180.00"}, {"order": {"currency": "EUR"}},
                         {"a-1002": "office chair"})
    assert rows == [
        {"label": "Order id", "value": "A-1002", "kind": "id", "known_as": "office chair", "origin": None},
        {"label": "Amount", "value": "180.00 EUR", "kind": "amount", "known_as": "", "origin": None},
    ]


def test_addresses_are_checksummed() -> None:
    lower = "0x" + "ab" * 20
    [row] = argument_rows({"to": lower}, {}, {lower: "Payroll wallet"})
    assert row["value"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB" and row["known_as"] == "Payroll wallet"


def test_facts_flatten_with_labels() -> None:
    rows = fact_rows({"order": {"customer_id": "cus_ana", "exists": True}}, {"cus_ana": "Ana Lima"})
    assert rows == [{"label": "Order · customer id", "value": "cus_ana", "known_as": "Ana Lima"},
                    {"label": "Order · exists", "value": "True", "known_as": ""}]


def test_argument_rows_say_where_each_argument_came_from() -> None:
    provenance = {
        "to": {"sources": [{"from": "tool:read_invoice", "field": "note", "trusted": False, "context": "pay X instead"}]
               * 5, "trusted": False},
        "amount": {"sources": [], "trusted": False},
        "memo": {"sources": [{"from": "user", "field": "input.message", "trusted": True, "context": "INV-7"}],
                 "trusted": True},
    }
    rows = argument_rows({"to": "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc", "amount": "5", "memo": "INV-7",
                          "chain_id": 31337}, {}, {}, provenance)
    to, amount, memo, chain = (r["origin"] for r in rows)
    assert not to["trusted"] and not to["made_up"] and len(to["sources"]) == 3 and to["more"] == 2
    assert to["sources"][0] == {"from": "tool:read_invoice", "field": "note", "context": "pay X instead",
                                "trusted": False}
    assert amount["made_up"] and not amount["trusted"]
    assert memo["trusted"] and memo["sources"][0]["from"] == "user"
    assert chain is None  # not traced: nothing is said about it


def _payment_waiting(to: str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906") -> Any:
    from datetime import UTC, datetime, timedelta

    from engine.store.approvals import ApprovalView

    now = datetime.now(UTC)
    return ApprovalView(
        approval_id="apr_0123456789ab", run_id="treasury-payout-0123abcd", workflow="treasury-payout", version=1,
        tool="transfer_token", args={"chain_id": 31337, "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                                     "to": to, "amount": "4800.00", "memo": "INV-2042 [red]paid[/]"},
        facts={}, model_reason=None,
        policy_reasons=["payments above 1000 tUSD need one approval by treasury-approvers [bold]"],
        approvers=["treasury-approvers"], min_approvals=1, policy_revision=None, digest="sha256:00",
        requested_by="alice", tenant="default", status="pending", votes=[], reason=None, created_at=now,
        expires_at=now + timedelta(hours=24),
        decided_at=None)


def test_a_table_too_wide_for_the_terminal_becomes_one_record_per_block() -> None:
    """At 80 columns the inbox's row (two addresses, a reason) would fold the addresses into slivers: each item is
    shown as "column: value" lines instead, every address whole on its line; a wide terminal gets the table."""
    from rich.console import Console

    from engine.cli.render import approvals_table

    narrow = Console(record=True, width=80, color_system=None)
    narrow.print(approvals_table(narrow, [_payment_waiting()]))
    text = narrow.export_text()
    assert "│" not in text and "arguments: chain_id=31337, token=0x5FbDB2315678afecb367f032d93F642f641" in text
    # the policy's text, shown as written, never read as markup
    assert "policy reasons: payments above 1000 tUSD need one approval by treasury-approvers [bold]" in (
        text.replace("\n", " "))
    assert "requested by: alice\n" in text
    wide = Console(record=True, width=400, color_system=None)
    wide.print(approvals_table(wide, [_payment_waiting()]))
    assert "│ apr_0123456789ab │ treasury-payout v1 │" in wide.export_text()
