"""Helpers shared by tests: write a spec with its own scripted turns, wait for the inbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle

from engine.boundary.identity import Authority
from engine.config import Settings
from engine.runtime import runs
from engine.runtime.payloads import RunResult
from engine.runtime.worker import build_worker
from engine.spec import ResolvedSpec, load_spec
from engine.spec.script import dump_script
from engine.store import repo, users
from engine.store.db import Database, make_engine
from engine.store.repo import ApprovalView
from engine.store.tables import UserRow
from engine.store.users import Approver
from tests.conftest import PASSWORD, signing_key
from tools import support

ROOT = Path(__file__).resolve().parent.parent
REFUND_TOOLS = ["tools.support:lookup_order", "tools.support:issue_refund"]


def refund(order_id: str, amount: str, reason: str = "item arrived damaged") -> dict[str, Any]:
    """One scripted ``issue_refund`` call."""
    return {"name": "issue_refund", "args": {"order_id": order_id, "amount": amount, "reason": reason}}


DEMO_TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # where `airlock up` deploys tUSD


def payment_facts(to: str, amount: str) -> dict[str, Any]:
    """Facts of a tUSD transfer of ``amount`` to ``to`` from the demo treasury that hold (the policy decides on
    the payee list and the limits)."""
    return {
        "chain": {"node_id": 31337, "configured_id": 31337, "requested_id": 31337, "matches": True},
        "sender": {"address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "token_balance": "100000"},
        "token": {"address": DEMO_TOKEN, "has_code": True, "symbol": "tUSD", "decimals": 6},
        "amount": {"value": amount, "unlimited": False},
        "recipient": {"address": to, "is_contract": False},
        "sent_today": "0",
        "simulation": {"ok": True, "revert_reason": None, "balance_changes": []},
    }


def write_spec(tmp_path: Path, turns: list[dict[str, Any]], spec_file: str = "spec.yaml",
               **overrides: Any) -> ResolvedSpec:
    """A support-refund spec whose scripted model answers ``turns``.

    Written into ``tmp_path``, the folder the test's worker serves (see the ``settings`` fixture).
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / spec_file.replace(".yaml", ".turns.yaml").replace("spec.turns", "turns")
    script.write_text(dump_script({"turns": turns}))
    body: dict[str, Any] = {
        "name": "refund-test", "version": 1, "system_prompt": "You issue refunds within policy.",
        "model": {"provider": "scripted", "script": str(script)}, "tools": REFUND_TOOLS,
        "policy": "airlock.support_refund", "approval": {"timeout": "1h"},
    }
    body.update(overrides)
    path = tmp_path / spec_file
    path.write_text(yaml.safe_dump(body))
    return load_spec(path, project_dir=ROOT)


async def wait_for_inbox(db_url: str, run_id: str, count: int = 1, timeout: float = 30.0) -> list[ApprovalView]:
    """Poll the SQL inbox until the run has ``count`` pending approvals."""
    engine = make_engine(db_url)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with Session(engine) as session:
            items = repo.list_approvals(session, run_id=run_id)
        if len(items) >= count:
            return items
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id} has {len(items)} pending approvals after {timeout}s")
        await asyncio.sleep(0.1)


def authority() -> Authority:
    """What signs assertions for the people a test acts as (the UI or CLI would, after checking a password)."""
    return Authority(serialization.load_pem_private_key(signing_key().encode(), password=None))  # type: ignore[arg-type]


def grant(db: Database, person: Approver) -> Approver:
    """Make sure the user store gives ``person`` (at least) these roles: the run reads roles from there."""
    with Session(db.engine) as session:
        row = session.get(UserRow, person.name)
        if row is None:
            users.add_user(session, name=person.name, password=PASSWORD, roles=person.roles)
        elif not set(person.roles) <= set(row.roles):
            row.roles = sorted(set(row.roles) | set(person.roles))
            session.add(row)
            session.commit()
        found = users.get_user(session, name=person.name)
    assert found is not None
    return found


async def start_run(client: Client, *, task_queue: str, spec: ResolvedSpec | str, run_input: dict[str, Any],
                    requested_by: str = "alice", **kwargs: Any) -> WorkflowHandle:
    """Start a run as ``requested_by`` (a test account), pinned to ``spec``, signed as the CLI would sign it."""
    return await runs.start_run(client, authority(), task_queue=task_queue, workflow=spec, run_input=run_input,
                                requested_by=requested_by, **kwargs)


async def decide_approval(client: Client, db: Database, *, approver: Approver, **kwargs: Any) -> Any:
    """``approver`` decides (granted its roles in the user store first), signed as the UI would sign it."""
    return await runs.decide_approval(client, db, authority(), approver=grant(db, approver), **kwargs)


async def edit_action(client: Client, db: Database, *, approver: Approver, **kwargs: Any) -> Any:
    """``approver`` edits (granted its roles in the user store first), signed as the UI would sign it."""
    return await runs.edit_action(client, db, authority(), approver=grant(db, approver), **kwargs)


async def run_to_end(client: Client, settings: Settings, spec: ResolvedSpec, run_input: dict[str, Any],
                     requested_by: str = "alice") -> RunResult:
    """Start a run on a fresh in-process worker and wait for its result."""
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, run_input=run_input,
                                 requested_by=requested_by)
        return await handle.result()


def lead(name: str) -> Approver:
    """An approver holding the refund policy's approver role."""
    return Approver(name=name, roles=["support-leads"])


async def waiting_refund(client: Client, settings: Settings, tmp_path: Path, amount: str = "180.00",
                         said: str | None = None, run_input: dict[str, Any] | None = None,
                         **overrides: Any) -> tuple[WorkflowHandle, ApprovalView]:
    """Reset the demo ledger, start a one-refund run as alice (for cus_ana), wait until it asks for approval."""
    support.reset_demo_ledger(settings.db_url)
    first: dict[str, Any] = {"tool_calls": [refund("A-1002", amount)]}
    if said:
        first["content"] = said
    spec = write_spec(tmp_path, [first, {"content": "done"}], **overrides)
    handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                             run_input=run_input or {"customer_id": "cus_ana"})
    [item] = await wait_for_inbox(settings.db_url, handle.id)
    return handle, item
