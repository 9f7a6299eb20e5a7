"""The ``airlock`` command end to end, as a user runs it (subprocesses, real services)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from temporalio.client import Client, WorkflowFailureError

from engine.config import Settings
from engine.runtime.payloads import RunResult
from engine.runtime.worker import build_worker
from engine.store import repo, users
from engine.store.db import make_engine
from tests.conftest import signing_key
from tests.helpers import ROOT, refund, wait_for_inbox, waiting_refund, write_spec
from tools import support

pytestmark = pytest.mark.integration
AIRLOCK = [sys.executable, "-m", "engine.cli"]


def cli_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_STATE_DIR": str(settings.state_dir),
            "AIRLOCK_DATABASE_URL": settings.db_url, "AIRLOCK_TEMPORAL__ADDRESS": settings.temporal.address,
            "AIRLOCK_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue, "AIRLOCK_OPA__URL": settings.opa.url,
            "AIRLOCK_LLM__SCRIPTED_URL": settings.llm.scripted_url, "COLUMNS": "200",
            "AIRLOCK_WORKFLOWS_DIR": str(settings.workflows_dir), "AIRLOCK_AUTH__SIGNING_KEY": signing_key()}


async def airlock(settings: Settings, *args: str, password: str | None = None) -> tuple[int, str, str]:
    """Run the CLI. A command ``--as NAME`` proves it: ``--password-stdin`` with ``password``
    (default: NAME-password, as ``add_users`` sets it)."""
    args_ = list(args)
    stdin = None
    if "--as" in args_ and (args_[0] in ("run", "approve", "reject", "edit") or args_[:2] == ["runs", "cancel"]):
        name = args_[args_.index("--as") + 1]
        args_.append("--password-stdin")
        stdin = ((password if password is not None else f"{name}-password") + "\n").encode()
    proc = await asyncio.create_subprocess_exec(*AIRLOCK, *args_, cwd=ROOT, env=cli_env(settings),
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out.decode(), err.decode()


async def inbox_from_cli(settings: Settings) -> list[dict[str, Any]]:
    """``airlock approvals list --json``, polled until it shows something."""
    for _ in range(300):
        _, out, _ = await airlock(settings, "approvals", "list", "--json")
        if json.loads(out or "[]"):
            return json.loads(out)
        await asyncio.sleep(0.2)
    raise AssertionError("the inbox stayed empty")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def add_users(db_url: str) -> None:
    with Session(make_engine(db_url)) as session:
        users.add_user(session, name="alice", password="alice-password", roles=["support"])
        users.add_user(session, name="bob", password="bob-password", roles=["support-leads"])
        users.add_user(session, name="dave", password="dave-password", roles=["support"])


async def test_run_wait_json_with_cli_approval(client: Client, settings: Settings, tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    add_users(settings.db_url)
    write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "75.00")]}, {"content": "refunded"}])
    async with build_worker(client, settings):
        run = asyncio.ensure_future(airlock(settings, "run", str(tmp_path / "spec.yaml"), "--input",
                                            '{"customer_id": "cus_ana"}', "--as", "alice", "--wait", "--json"))
        [item] = await inbox_from_cli(settings)
        assert item["tool"] == "issue_refund" and item["args"]["amount"] == "75.00"
        code, _, err = await airlock(settings, "approve", item["approval_id"], "--as", "alice")
        assert code == 1 and "alice started this run and cannot decide its actions" in err
        code, _, err = await airlock(settings, "approve", item["approval_id"], "--as", "dave")
        assert code == 1 and "dave does not hold a role that may decide this action" in err
        code, _, err = await airlock(settings, "approve", item["approval_id"], "--as", "mallory")
        assert code == 1 and "--as mallory: wrong user name or password" in err
        code, _, err = await airlock(settings, "approve", item["approval_id"], "--as", "bob", password="guess")
        assert code == 1 and "--as bob: wrong user name or password" in err
        code, out, _ = await airlock(settings, "approve", item["approval_id"], "--as", "bob", "--comment", "ok")
        assert code == 0 and f"{item['approval_id']}: approved" in out
        code, out, err = await run
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and result["output"] == "refunded"
    [call] = result["tool_calls"]
    assert (call["decision"], call["outcome"], call["approved_by"]) == ("require_approval", "executed", ["bob"])
    assert call["reasons"] == ["refunds above 50 need one approval by support-leads"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_run_wait_says_a_cancelled_run_was_cancelled(client: Client, settings: Settings,
                                                           tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    add_users(settings.db_url)
    write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "75.00")]}, {"content": "refunded"}])
    async with build_worker(client, settings):
        for as_json in (True, False):
            run = asyncio.ensure_future(airlock(settings, "run", str(tmp_path / "spec.yaml"), "--input",
                                                '{"customer_id": "cus_ana"}', "--as", "alice", "--wait",
                                                *(["--json"] if as_json else [])))
            [item] = await inbox_from_cli(settings)
            await client.get_workflow_handle(item["run_id"]).cancel()
            code, out, err = await run
            assert code == 1 and "Traceback" not in err
            if as_json:
                assert json.loads(out) == {"run_id": item["run_id"], "status": "cancelled", "reason": (
                    "its workflow was cancelled in Temporal (its approvals closed as expired)")}
            else:
                assert f"run {item['run_id']} cancelled: its workflow was cancelled in Temporal" in err


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_run_wait_shows_live_progress(client: Client, settings: Settings, tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    add_users(settings.db_url)
    write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "75.00")]}, {"content": "refunded [in full]"}])
    async with build_worker(client, settings):
        run = asyncio.ensure_future(airlock(settings, "run", str(tmp_path / "spec.yaml"), "--input",
                                            '{"customer_id": "cus_ana"}', "--as", "alice", "--wait"))
        [item] = await inbox_from_cli(settings)
        await asyncio.sleep(1.5)  # the waiting run polls twice a second: let it see the wait
        code, out, _ = await airlock(settings, "approve", item["approval_id"], "--as", "bob")
        assert code == 0, out
        code, out, err = await run
    assert code == 0, err
    lines = err.splitlines()
    assert any(line.startswith("step 1: waiting for approval · 1 model call(s), ") for line in lines), lines
    waiting = [line for line in lines if line.startswith(f"waiting for approval {item['approval_id']}: issue_refund(")]
    assert len(waiting) == 1  # printed once, not on every poll
    assert waiting[0].endswith("— refunds above 50 need one approval by support-leads. Needs 1 approval(s) from "
                               f"support-leads; 0/1 so far. Approve with `airlock approve {item['approval_id']} "
                               "--as USER`.")
    assert "final answer: refunded [in full]" in out  # model text is printed as text, never as markup


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_runs_cancel_from_cli_by_the_requester_only(client: Client, settings: Settings, tmp_path: Path) -> None:
    add_users(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path)
        code, _, err = await airlock(settings, "runs", "cancel", handle.id, "--as", "bob", "--reason", "not yours")
        assert code == 1 and f"bob may not cancel run {handle.id}: only alice, who started it" in " ".join(err.split())
        code, _, err = await airlock(settings, "runs", "cancel", handle.id, "--as", "alice", "--reason", "x",
                                     password="wrong")
        assert code == 1 and "wrong user name or password" in err
        code, out, err = await airlock(settings, "runs", "cancel", handle.id, "--as", "alice", "--reason",
                                       "asked by mistake", "--json")
        assert code == 0, err
        assert json.loads(out) == {"run_id": handle.id, "status": "cancelling"}
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        code, out, _ = await airlock(settings, "runs", "show", handle.id, "--json")
        assert json.loads(out)["run"]["reason"] == "cancelled: alice cancelled it: asked by mistake"
        code, _, err = await airlock(settings, "runs", "cancel", handle.id, "--as", "alice", "--reason", "again")
        assert code == 1 and "has ended (cancelled): there is nothing to cancel" in " ".join(err.split())
    with Session(make_engine(settings.db_url)) as session:
        assert [a.status for a in repo.list_approvals(session, status=None, run_id=handle.id)] == ["expired"]
    assert item.status == "pending"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_reject_from_cli_needs_reason_and_reaches_run(client: Client, settings: Settings,
                                                             tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    add_users(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "75.00")]}, {"content": "ok"}])
    async with build_worker(client, settings):
        code, out, _ = await airlock(settings, "run", str(tmp_path / "spec.yaml"), "--as", "alice", "--json",
                                     "--input", '{"customer_id": "cus_ana"}')
        run_id = json.loads(out)["run_id"]
        assert run_id.startswith(spec.name + "-")
        [item] = await wait_for_inbox(settings.db_url, run_id)
        code, _, err = await airlock(settings, "reject", item.approval_id, "--as", "bob", "--reason", " ")
        assert code == 2 and "--reason: a rejection needs a reason" in err
        code, out, _ = await airlock(settings, "reject", item.approval_id, "--as", "bob", "--reason", "duplicate",
                                     "--json")
        assert code == 0 and json.loads(out)["approval_id"] == item.approval_id
        assert json.loads(out)["status"] == "rejected"
        result = await client.get_workflow_handle(run_id, result_type=RunResult).result()
    assert result.tool_calls[0].outcome == "rejected" and result.tool_calls[0].error == "duplicate"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_users_add_and_token(settings: Settings) -> None:
    proc = await asyncio.create_subprocess_exec(*AIRLOCK, "users", "add", "erin", "--role", "support-leads",
                                                "--role", "treasury-ops", "--password-stdin", cwd=ROOT,
                                                env=cli_env(settings), stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(b"correct horse battery\n")
    assert proc.returncode == 0 and "user erin: roles support-leads, treasury-ops" in out.decode()
    code, out, _ = await airlock(settings, "users", "token", "erin")
    token = out.strip()
    assert code == 0 and token.startswith("alk_")
    with Session(make_engine(settings.db_url)) as session:
        assert users.authenticate(session, name="erin", password="correct horse battery")
        assert users.authenticate(session, name="erin", password="wrong horse battery") is None
        found = users.user_for_token(session, token=token)
        assert found and found.roles == ["support-leads", "treasury-ops"]
    code, _, err = await airlock(settings, "users", "token", "nobody")
    assert code == 2 and "no user nobody" in err
