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
