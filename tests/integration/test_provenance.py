"""The policy's input says where each argument came from, and what every earlier call came to (real Temporal,
OPA, scripted model and SQL): ``input.provenance`` and ``input.run.previous`` as the worker built them from
its own records, stored with the decision OPA made on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from temporalio.client import Client

from engine.config import Settings
from engine.runtime.worker import build_worker
from engine.store.db import make_engine
from engine.store.tables import PolicyDecisionRow
from tests.helpers import refund, run_to_end, write_spec
from tools import support

pytestmark = pytest.mark.integration


def _inputs(db_url: str, run_id: str) -> list[dict[str, Any]]:
    with Session(make_engine(db_url)) as session:
        rows = session.exec(select(PolicyDecisionRow).where(PolicyDecisionRow.run_id == run_id)
                            .order_by(col(PolicyDecisionRow.created_at))).all()
        return [r.input for r in rows]


async def test_the_policy_sees_where_each_argument_came_from(client: Client, settings: Settings,
                                                             tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [
        {"tool_calls": [refund("B-2001", "10.00")]},  # another customer's order: denied
        {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1001"}}]},
        {"tool_calls": [refund("A-1001", "40.00", reason="the lamp arrived broken")]},
        {"content": "Refunded."}])
    said = {"customer_id": "cus_ana", "message": "Please refund my order A-1001, the lamp arrived broken."}
    result = await run_to_end(client, settings, spec, said)
    assert [c.outcome for c in result.tool_calls] == ["denied", "executed", "executed"]
    denied, lookup, paid = _inputs(settings.db_url, result.run_id)
    assert paid["version"] == 2
    seen = paid["provenance"]
    # the order id: typed by the user (the lookup's result only repeats the lookup's own argument)
    assert [(s["from"], s["field"], s["trusted"]) for s in seen["order_id"]["sources"]] == [
        ("user", "input.message", True)]
    assert "refund my order A-1001, the lamp" in seen["order_id"]["sources"][0]["context"]
    # the amount: the order's total, which the shop's own ledger vouches for
    assert seen["amount"]["trusted"] and ("tool:lookup_order", "total", True) in [
        (s["from"], s["field"], s["trusted"]) for s in seen["amount"]["sources"]]
    assert seen["reason"]["trusted"] and seen["reason"]["sources"][0]["from"] == "user"
    # the denied call is in what the run did before, with its outcome; the lookup with its labelled result
    previous = paid["run"]["previous"]
    assert [(p["tool"], p["outcome"]) for p in previous] == [("issue_refund", "denied"), ("lookup_order", "executed")]
    assert previous[0]["args"]["order_id"] == "B-2001" and previous[0]["result"] is None
    assert previous[1]["result"]["total"] == "40.00" and previous[1]["trusted"] is True
    assert paid["run"]["calls"] == {"lookup_order": 1}  # executed calls only
    # a value the model made up: found nowhere, untrusted
    assert denied["provenance"]["order_id"] == {"sources": [], "trusted": False}
    assert lookup["run"]["previous"][0]["outcome"] == "denied"


async def test_the_approver_is_shown_where_each_argument_came_from(client: Client, settings: Settings,
                                                                    tmp_path: Path) -> None:
    """The order id the customer typed is shown as theirs; the amount nobody gave is flagged as made up; the
    terminal shows both, and an argument's text is never read as markup."""
    from rich.console import Console

    from engine.cli.render import approval_panel
    from engine.store import repo
    from engine.store.db import Database
    from tests.helpers import waiting_refund

    said = {"customer_id": "cus_ana", "message": "Please refund A-1002, the chair arrived [red]late[/]."}
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path, "180.00", run_input=said)
    shown = Database(settings.db_url).call(repo.get_approval, approval_id=item.approval_id)
    assert shown is not None
    assert shown.provenance["order_id"]["trusted"] and shown.provenance["order_id"]["sources"][0]["from"] == "user"
    assert shown.provenance["amount"] == {"sources": [], "trusted": False}
    console = Console(record=True, width=200, color_system=None)
    console.print(approval_panel(shown))
    text = console.export_text()
    assert "from user · input.message: “Please refund A-1002, the chair arrived [red]late[/].”" in text
    assert "amount: 180.00" in text and "found nowhere the run has seen: the model made it up" in text
    await handle.terminate()
