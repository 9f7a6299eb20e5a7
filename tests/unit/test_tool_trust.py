"""What a tool vouches for in its output, as declared (``@tool(trusted=...)`` or a result model's fields)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from engine.spec import add_import_roots
from engine.toolkit import ToolContext, ToolDef, resolve_tool, tool
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
    metadata = resolve_tool("tools.treasury:token_metadata")
    assert metadata.trusted == frozenset({"token", "decimals"})
    assert metadata.trusted_field("decimals") and not metadata.trusted_field("name")


def test_listed_fields_cover_their_sub_fields_and_list_items() -> None:
    declared = tool(trusted=["items.amount", "account"])(lambda args, ctx: {})
    meta = declared.__airlock_tool__
    assert meta["trusted"] == frozenset({"items.amount", "account"})
    defn = ToolDef(import_path="x:y", name="y", func=declared, args_model=_Args, consequential=False, description="",
                   facts=None, trusted=meta["trusted"])
    assert defn.trusted_field("items[3].amount") and defn.trusted_field("account.iban")
    assert not defn.trusted_field("items[3].memo") and not defn.trusted_field("accounts")
    assert not defn.trusted_field("item.amount")


def test_a_result_model_marks_its_trusted_fields(monkeypatch: Any) -> None:
    import tools.support as module

    @tool()
    def history(args: _Args, ctx: ToolContext) -> _History:
        return _History(amount="1", date="d", subject="s")

    history.__module__ = module.__name__
    monkeypatch.setattr(module, "history", history, raising=False)
    resolved = resolve_tool("tools.support:history")
    assert resolved.trusted == frozenset({"amount", "date"})
    assert not resolved.trusted_field("subject")
