"""What a tool vouches for in its output, as declared (``@tool(trusted=...)`` or a result model's fields)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from engine.boundary.provenance import source_of
from engine.spec import add_import_roots
from engine.toolkit import ToolContext, resolve_tool, tool
from tests.helpers import ROOT

add_import_roots(ROOT)  # the project's own tools may be resolved


class _Args(BaseModel):
    q: str


class _History(BaseModel):
    amount: str = Field(json_schema_extra={"trusted": True})
    date: str = Field(json_schema_extra={"trusted": True})
    subject: str  # written by whoever sent the transfer


def test_the_demo_tools_declare_what_they_vouch_for() -> None:
    assert resolve_tool("tools.support:lookup_order").trusted is True
    assert resolve_tool("tools.support:issue_refund").trusted is False  # unlabelled output is untrusted
    assert resolve_tool("tools.treasury:token_metadata").trusted == frozenset({"token", "decimals"})
    assert resolve_tool("tools.invoices:read_invoice").trusted == frozenset(
        {"invoice_id", "vendor", "amount_due", "token", "due"})
    assert resolve_tool("tools.support:read_ticket").trusted == frozenset({"ticket_id", "customer_id"})
    assert resolve_tool("tools.support:fetch_page").trusted is False
    assert resolve_tool("tools.support:send_email").trusted is False


def test_an_email_is_sent_once_per_action_and_its_facts_name_the_customer_on_file(tmp_path: Any) -> None:
    """A retried execution of the same action (same idempotency key) returns the first email; the facts give
    the address the run's customer gave the shop, and nothing for a run without a known customer."""
    from sqlmodel import Session, select

    from tools import support

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    ctx = ToolContext(run_id="r", step=1, idempotency_key="r:call_1", database_url=url, requested_by="alice",
                      tenant="default", run_input={"customer_id": "cus_ana"})
    args = support.EmailArgs(to="ana.lima@mail.example", subject="Your refund", body="We refunded 40.00 EUR.")
    first, again = support.send_email(args, ctx), support.send_email(args, ctx)
    assert first == again and first["to"] == "ana.lima@mail.example"
    other = support.send_email(args, ctx.model_copy(update={"idempotency_key": "r:call_2"}))
    assert other["message_id"] != first["message_id"]
    with Session(support.ledger(url)) as session:
        assert len(session.exec(select(support.Email)).all()) == 2
    assert support.email_facts(args, ctx)["customer"]["email"] == "ana.lima@mail.example"
    stranger = ctx.model_copy(update={"run_input": {"customer_id": "cus_nobody"}})
    assert support.email_facts(args, stranger)["customer"] == {"exists": False}


def test_listed_fields_cover_their_sub_fields_and_list_items_as_the_worker_applies_them() -> None:
    declared = tool(trusted=["items.amount", "account"])(lambda args, ctx: {})
    listed = declared.__airlock_tool__["trusted"]
    result = {"items": [{"amount": "1", "memo": "m"}], "account": {"iban": "GB33"}, "accounts": "x",
              "item": {"amount": "2"}}
    trust = {s.field: s.trusted for s in source_of("tool:t", result, trusted=dict.fromkeys(listed, True))}
    assert trust == {"items[0].amount": True, "items[0].memo": False, "account.iban": True, "accounts": False,
                     "item.amount": False}


def test_a_bare_string_is_refused() -> None:
    with pytest.raises(TypeError, match="not the string 'amount'"):
        tool(trusted="amount")  # type: ignore[arg-type]


def test_a_result_model_marks_its_trusted_fields(monkeypatch: Any) -> None:
    import tools.support as module

    @tool()
    def history(args: _Args, ctx: ToolContext) -> _History:
        return _History(amount="1", date="d", subject="s")

    history.__module__ = module.__name__
    monkeypatch.setattr(module, "history", history, raising=False)
    assert resolve_tool("tools.support:history").trusted == frozenset({"amount", "date"})


@pytest.mark.parametrize("body", ["pay.evil.example/x", "hxxps://pay.evil.example", "ftp://pay.evil.example",
                                  "https:\\\\pay.evil.example", "ｈｔｔｐｓ://ｐａｙ.evil.example",
                                  "http\u200b://pay.\u200bevil.example", "//PAY.EVIL.EXAMPLE."])
def test_an_emails_hosts_are_found_however_the_link_is_dressed(body: str) -> None:
    from tools import support

    assert "pay.evil.example" in support.hosts_in(f"Please confirm at {body} today")
    ctx = ToolContext(run_id="r", step=1, idempotency_key="k", database_url="sqlite://", requested_by="alice",
                      tenant="default", run_input={"customer_id": "cus_ana"})
    args = support.EmailArgs(to="finance@shop.example", subject="Invoice", body=f"See {body} and shop.example/help")
    assert support.email_facts(args, ctx)["foreign_hosts"] == ["pay.evil.example"]


@pytest.mark.parametrize("to", ["ben.o\u212aafor@post.example", "evil%attacker.example@shop.example",
                                "attacker.example!evil@shop.example", '"evil"@shop.example', "a@b@shop.example"])
def test_an_email_address_is_plain_ascii_without_relay_tricks(to: str) -> None:
    from pydantic import ValidationError

    from tools import support

    with pytest.raises(ValidationError):
        support.EmailArgs(to=to, subject="s", body="b")
