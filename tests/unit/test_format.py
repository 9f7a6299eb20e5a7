"""Arguments rendered legibly: amounts with units, checksummed addresses, labels from policy data."""

from __future__ import annotations

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
