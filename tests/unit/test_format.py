"""Arguments rendered legibly: amounts with units, checksummed addresses, labels from policy data."""

from __future__ import annotations

from engine.ui.format import argument_rows, fact_rows


def test_amount_gets_currency_from_facts_and_ids_get_labels() -> None:
    rows = argument_rows({"order_id": "A-1002", "amount": "180.00"}, {"order": {"currency": "EUR"}},
                         {"a-1002": "office chair"})
    assert rows == [
        {"label": "Order id", "value": "A-1002", "kind": "id", "known_as": "office chair"},
        {"label": "Amount", "value": "180.00 EUR", "kind": "amount", "known_as": ""},
    ]


def test_addresses_are_checksummed() -> None:
    lower = "0x" + "ab" * 20
    [row] = argument_rows({"to": lower}, {}, {lower: "Payroll wallet"})
    assert row["value"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB" and row["known_as"] == "Payroll wallet"


def test_facts_flatten_with_labels() -> None:
    rows = fact_rows({"order": {"customer_id": "cus_ana", "exists": True}}, {"cus_ana": "Ana Lima"})
    assert rows == [{"label": "Order · customer id", "value": "cus_ana", "known_as": "Ana Lima"},
                    {"label": "Order · exists", "value": "True", "known_as": ""}]
