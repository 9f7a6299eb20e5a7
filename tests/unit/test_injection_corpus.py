"""The injection corpus (bench/injection_corpus.yaml) is well-formed: enough cases of each kind, unique ids,
every call a tool of its workflow, every read answered by a document the case itself registers, every
argument valid except where a case is about invalid arguments."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from bench.injection import EXPECTED, KINDS, WORKFLOWS, Case, consequential_tools, load_corpus, workflow_spec
from engine.boundary.arguments import check_arguments
from engine.local.scripted import Script
from engine.toolkit import resolve_tool
from tools import invoices, support

CASES = load_corpus()
IDS = [c.id for c in CASES]
# Cases whose point is that the model copied a look-alike the argument check refuses.
INVALID_ON_PURPOSE = {"tr-unicode-fullwidth-amount", "tr-unicode-cyrillic-address", "su-exfil-cyrillic-domain",
                      "su-other-order-lowercase-id"}
DOCUMENTS = {"treasury": {"invoices"}, "support": {"tickets", "pages", "orders"}}
# Which document answers each read, by argument.
READS = {"read_invoice": ("invoices", "invoice_id"), "read_ticket": ("tickets", "ticket_id"),
         "fetch_page": ("pages", "url"), "lookup_order": ("orders", "order_id")}


def test_enough_cases_of_each_kind() -> None:
    kinds = Counter(c.kind for c in CASES)
    assert kinds["injected"] >= 50 and kinds["legitimate"] >= 25, kinds
    assert {c.workflow for c in CASES if c.kind == "injected"} == set(WORKFLOWS)
    assert {c.workflow for c in CASES if c.kind == "legitimate"} == set(WORKFLOWS)
    expected = Counter(c.expected for c in CASES if c.kind == "legitimate")
    assert expected["allow"] >= 25 and expected["escalate"] >= 2, expected  # routine ones, and some unusual
    assert len({c.pattern for c in CASES if c.kind == "injected"}) >= 10


def test_ids_are_unique_and_make_workflow_names() -> None:
    assert len(IDS) == len(set(IDS)), [i for i, n in Counter(IDS).items() if n > 1]
    for case in CASES:
        assert re.fullmatch(r"[a-z][a-z0-9-]{2,55}", case.id), case.id
        assert re.fullmatch(r"^[a-z][a-z0-9_-]*$", case.spec_name) and len(case.spec_name) <= 64


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_is_well_formed(case: Case) -> None:
    assert case.workflow in WORKFLOWS and case.kind in KINDS
    assert re.fullmatch(r"[a-z][a-z0-9-]+", case.pattern) and case.summary.strip()
    assert (case.expected in EXPECTED) if case.kind == "legitimate" else case.expected is None
    assert isinstance(case.input.get("message"), str) and case.input["message"].strip()
    if case.workflow == "support":
        assert case.input.get("customer_id") in support.CUSTOMERS
    assert set(case.documents) <= DOCUMENTS[case.workflow]
    Script.model_validate(case.script())  # what the scripted model will read
    assert case.turns[-1].get("content") and not case.turns[-1].get("tool_calls"), "ends with a final answer"
    assert all(t.get("content") or t.get("tool_calls") for t in case.turns)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_call_is_a_tool_of_its_workflow_with_valid_arguments(case: Case) -> None:
    spec = workflow_spec(case.workflow)
    tools = {t.name: t for t in spec.tool_specs}
    invalid = []
    for call in case.proposed():
        assert call["name"] in tools, f"{call['name']} is not a tool of {spec.name}"
        assert call.get("kind", case.kind) in KINDS
        check = check_arguments(resolve_tool(tools[call["name"]].import_path).args_model, json.dumps(call["args"]))
        if not check.ok:
            invalid.append(f"{call['name']}: {check.error}")
    assert bool(invalid) == (case.id in INVALID_ON_PURPOSE), invalid


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_case_has_the_consequential_calls_its_kind_says(case: Case) -> None:
    calls = case.calls(consequential_tools(case.workflow))
    assert calls, "no consequential call"
    kinds = {c.kind for c in calls}
    if case.kind == "legitimate":
        assert kinds == {"legitimate"}
    else:
        assert "injected" in kinds


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_read_is_answered_by_the_cases_own_documents(case: Case) -> None:
    for call in case.proposed():
        if call["name"] in READS:
            kind, arg = READS[call["name"]]
            held = case.documents.get(kind) or {}
            keys = {o["order_id"] for o in held} if kind == "orders" else set(held)
            assert call["args"][arg] in keys, f"{call['name']}({call['args'][arg]}) reads nothing this case holds"
    for call in case.proposed():  # a refund's order is the case's own, so refunds of runs run side by side
        if call["name"] == "issue_refund" and case.id not in INVALID_ON_PURPOSE:
            assert call["args"]["order_id"] in {o["order_id"] for o in case.documents.get("orders") or []}


def test_documents_are_well_formed_and_nobody_elses() -> None:
    seen: dict[str, str] = {}
    for case in CASES:
        docs = case.documents
        for invoice_id, invoice in (docs.get("invoices") or {}).items():
            assert re.fullmatch(r"INV-\d{4}", invoice_id) and invoice_id not in invoices.INVOICES
            assert {"vendor", "amount_due", "due", "pay_to"} <= set(invoice), invoice_id
        for ticket_id, ticket in (docs.get("tickets") or {}).items():
            assert re.fullmatch(support.TICKET_ID, ticket_id) and ticket_id not in support.TICKETS
            assert ticket["customer_id"] in support.CUSTOMERS and ticket["subject"] and ticket["body"]
        for url, page in (docs.get("pages") or {}).items():
            assert url.startswith("https://") and url not in support.PAGES and page["title"] and page["text"]
        for order in docs.get("orders") or []:
            assert re.fullmatch(support.ORDER_ID, order["order_id"])
            assert order["order_id"] not in {o.order_id for o in support.DEMO_ORDERS}
            assert order["customer_id"] in support.CUSTOMERS and float(order["total"]) > 0
        keys = [*(docs.get("invoices") or {}), *(docs.get("tickets") or {}), *(docs.get("pages") or {}),
                *(o["order_id"] for o in docs.get("orders") or [])]
        for key in keys:
            assert key not in seen, f"{key} is in {seen.get(key)} and {case.id}"
            seen[key] = case.id
