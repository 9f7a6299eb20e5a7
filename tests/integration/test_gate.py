"""``airlock gate`` on the real stack (Temporal, the worker, OPA, the scripted model): a candidate policy that lets
a recorded denial through fails the gate naming the threshold, an eval dataset below its success rate or dropping
against the base version fails it, and a harmless change passes."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from engine.config import Settings
from engine.runtime.worker import build_worker
from engine.spec import load_spec
from engine.spec.script import dump_script
from engine.store.db import migrate
from tests.conftest import PASSWORD
from tests.helpers import ROOT, refund, start_run, wait_for_inbox, write_spec
from tests.integration.test_cli import cli_env
from tools import support

pytestmark = pytest.mark.integration
AIRLOCK = [sys.executable, "-m", "engine.cli"]
DATASET = ROOT / "evals" / "support_refund.yaml"


async def gate(settings: Settings, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``airlock gate ...``; eval runs started by alice and decided by bob, both proven on stdin."""
    proc = await asyncio.create_subprocess_exec(
        *AIRLOCK, "gate", *args, cwd=ROOT, env={**cli_env(settings), **(env or {})}, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(f"{PASSWORD}\n{PASSWORD}\n".encode())
    return proc.returncode or 0, out.decode(), err.decode()


def candidate(folder: Path, *changes: tuple[str, str]) -> Path:
    """The shipped policies with lines of the refund policy changed."""
    shutil.copytree(ROOT / "policies", folder)
    rego = folder / "support_refund.rego"
    text = rego.read_text()
    for old, new in changes:
        assert old in text
        text = text.replace(old, new)
    rego.write_text(text)
    return folder


async def record_refunds(client: Client, settings: Settings, tmp_path: Path) -> None:
    """Three recorded decisions of real runs: 25.00 allowed, 180.00 sent for approval, 900.00 denied."""
    support.reset_demo_ledger(settings.db_url)
    refunds = (("25.00", "A-1001"), ("180.00", "A-1002"), ("900.00", "A-1003"))
    write_spec(tmp_path, [])
    (tmp_path / "turns.yaml").write_text(dump_script({"cases": [
        {"match": f"refund {amount}", "turns": [{"tool_calls": [refund(order, amount)]}, {"content": "done"}]}
        for amount, order in refunds]}))
    spec = load_spec(tmp_path / "spec.yaml", project_dir=ROOT)
    async with build_worker(client, settings):
        handles = {amount: await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                           run_input={"customer_id": "cus_ana", "message": f"refund {amount}"})
                   for amount, _ in refunds}
        assert (await handles["900.00"].result()).tool_calls[0].outcome == "denied"
        assert (await handles["25.00"].result()).tool_calls[0].outcome == "executed"
        await wait_for_inbox(settings.db_url, handles["180.00"].id)
        await handles["180.00"].terminate()


async def test_a_policy_that_lets_a_recorded_denial_through_fails_and_a_harmless_one_passes(
        client: Client, settings: Settings, tmp_path: Path) -> None:
    await record_refunds(client, settings, tmp_path)
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump({"shadow": {
        "policies": "candidate", "since": "1h", "fail_on": ["deny->allow", "require_approval->allow"],
        "max_changed": 1}}))
    # The recorded traffic is read from a file holding its URL (a replica's credentials, as a CI secret would
    # be); the configured database is another, empty one: the gate must not read it.
    (tmp_path / "recorded-url").write_text(settings.db_url + "\n")
    empty = {"AIRLOCK_DATABASE_URL": f"sqlite:///{tmp_path / 'stack.db'}"}
    migrate(empty["AIRLOCK_DATABASE_URL"])

    candidate(tmp_path / "candidate", ("_auto_limit := 50", "_auto_limit := 5000"),
              ("_approval_limit := 500", "_approval_limit := 5000"))  # 900 and 180 would go through alone
    code, out, err = await gate(settings, "--config", str(tmp_path / "gate.yaml"), "--recorded-db-file",
                                str(tmp_path / "recorded-url"), env=empty)
    assert code == 1, out + err
    assert "re-decided 3 recorded decision(s) of the last 1h: 2 changed" in out
    assert "gate failed: shadow.fail_on (deny->allow ×1, require_approval->allow ×1; deny->allow, " \
           "require_approval->allow); shadow.max_changed (2 changed; <= 1)" in " ".join(err.split())
    assert "Forbidden changes" in out and "issue_refund" in out
    assert "900.00" not in out + err and settings.db_url not in out + err  # no arguments, no URL in CI logs

    code, out, err = await gate(settings, "--config", str(tmp_path / "gate.yaml"), "--recorded-db-file",
                                str(tmp_path / "recorded-url"), "--json", env=empty)
    report = json.loads(out)
    assert code == 1 and report["failed"] == ["shadow.fail_on", "shadow.max_changed"]
    assert report["shadow"]["forbidden"] == {"deny->allow": 1, "require_approval->allow": 1}
    assert {c["tool"] for c in report["shadow"]["changes"]} == {"issue_refund"}
    assert "args" not in report["shadow"]["changes"][0]

    # Harmless: up to 1000 with approval. The 900 denial now asks a person: one change, of an allowed kind.
    harmless = candidate(tmp_path / "harmless", ("_approval_limit := 500", "_approval_limit := 1000"))
    code, out, err = await gate(settings, "--config", str(tmp_path / "gate.yaml"), "--policies", str(harmless),
                                "--recorded-db-file", str(tmp_path / "recorded-url"), "--json", env=empty)
    report = json.loads(out)
    assert code == 0, err
    assert report["passed"] and report["shadow"]["transitions"] == {"deny->require_approval": 1}
    assert {c["name"]: c["passed"] for c in report["checks"]} == {
        "shadow.min_decisions": True, "shadow.fail_on": True, "shadow.max_changed": True}

    # The configured (empty) database has nothing to re-decide: an empty window proves nothing.
    code, out, err = await gate(settings, "--config", str(tmp_path / "gate.yaml"), "--policies", str(harmless),
                                env=empty)
    assert code == 1 and "shadow.min_decisions (0 re-decided; >= 1)" in " ".join(err.split())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_gate_reads_a_sqlite_snapshot_without_changing_it(client: Client, settings: Settings,
                                                                  tmp_path: Path) -> None:
    """A snapshot stays as it was taken: the gate neither tightens its mode, nor turns on WAL, nor leaves files."""
    if not settings.db_url.startswith("sqlite"):
        pytest.skip("a snapshot file is SQLite's; PostgreSQL traffic is read through a replica's URL (above)")
    await record_refunds(client, settings, tmp_path)
    snapshot = tmp_path / "snapshot" / "recorded.db"
    snapshot.parent.mkdir()
    live, copy = sqlite3.connect(settings.db_url.split(":///", 1)[1]), sqlite3.connect(snapshot)
    live.backup(copy)
    copy.execute("PRAGMA journal_mode=DELETE")  # as a backup tool writes it: no WAL
    live.close(), copy.close()
    snapshot.chmod(0o644)
    taken = snapshot.read_bytes()
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump({"shadow": {
        "policies": "candidate", "since": "1h", "fail_on": ["deny->allow"]}}))
    harmless = candidate(tmp_path / "harmless", ("_approval_limit := 500", "_approval_limit := 1000"))
    code, out, err = await gate(settings, "--config", str(tmp_path / "gate.yaml"), "--policies", str(harmless),
                                "--recorded-db", f"sqlite:///{snapshot}", "--json")
    assert code == 0, out + err
    assert json.loads(out)["shadow"]["decided"] == 3
    assert snapshot.read_bytes() == taken
    assert snapshot.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in snapshot.parent.iterdir()] == ["recorded.db"]


async def test_an_eval_regression_fails_the_gate_and_a_harmless_prompt_change_passes(
        client: Client, settings: Settings, tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    base = tmp_path / "support_refund.yaml"  # the shipped definition, in the folder the worker serves
    regressed = yaml.safe_load(base.read_text())
    regressed["limits"]["max_tool_calls"] = 1  # the lamp case (two calls) no longer fits
    (tmp_path / "regressed.yaml").write_text(yaml.safe_dump(regressed, sort_keys=False))
    reworded = yaml.safe_load(base.read_text())
    reworded["system_prompt"] = "You are a careful support agent. Refund only within policy."
    del reworded["system_prompt_file"]
    (tmp_path / "reworded.yaml").write_text(yaml.safe_dump(reworded, sort_keys=False))
    thresholds = {"min_success_rate": 0.7, "max_drop": 0.1, "max_newly_failing": 0}

    def config(name: str, head: str) -> Path:
        path = tmp_path / f"{name}.gate.yaml"
        path.write_text(yaml.safe_dump({"evals": [{"dataset": str(DATASET), "workflow": head,
                                                   "base": "support_refund.yaml", **thresholds}]}))
        return path

    async with build_worker(client, settings):
        code, out, err = await gate(settings, "--config", str(config("regressed", "regressed.yaml")), "--as", "alice",
                                    "--approver", "bob", "--password-stdin")
        assert code == 1, out + err
        said = " ".join(err.split())
        assert ("gate failed: evals[support-refund].min_success_rate (60% (3/5); >= 70%); "
                "evals[support-refund].max_drop (80% -> 60%, a drop of 20 points; <= 10 points); "
                "evals[support-refund].max_newly_failing (1 (small-refund); <= 0)") in said, said
        assert "eval support-refund:" in out and "passed 3/5 (60%)" in out and "failing: small-refund" in out

        # The same dataset, a prompt reworded (the scripted model answers as before), and the shadow evaluation of
        # the unchanged policies on what those runs recorded: every threshold holds.
        code, out, err = await gate(settings, "--config", str(config("reworded", "reworded.yaml")), "--policies",
                                    str(ROOT / "policies"), "--since", "1h", "--fail-on", "any", "--as", "alice",
                                    "--approver", "bob", "--password-stdin", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["passed"] and report["failed"] == []
    assert [c["name"] for c in report["checks"]] == [
        "shadow.min_decisions", "shadow.fail_on", "evals[support-refund].min_success_rate",
        "evals[support-refund].max_drop", "evals[support-refund].max_newly_failing"]
    assert report["shadow"]["decided"] > 0 and report["shadow"]["changed"] == 0
    [evaluated] = report["evals"]
    assert evaluated["head"]["summary"]["success_rate"] == 0.8 == evaluated["base"]["summary"]["success_rate"]
    assert evaluated["newly_failing"] == [] and evaluated["head"]["failed_cases"] == ["designed-to-fail"]
    assert not list(tmp_path.glob("*-eval-*"))  # the derived definitions are gone
