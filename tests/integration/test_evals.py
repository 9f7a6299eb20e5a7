"""``airlock eval`` on the real stack: the shipped dataset (passing cases and one designed to fail), ``--compare``
of two versions, the results read back from SQL, and the stats page showing them."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.client import Client

from engine.config import Settings
from engine.runtime.worker import build_worker
from engine.store.db import Database
from engine.store.evals import get_eval, recent_evals
from tests.conftest import PASSWORD, Web
from tests.helpers import ROOT
from tests.integration.test_cli import cli_env
from tools import support

pytestmark = pytest.mark.integration
AIRLOCK = [sys.executable, "-m", "engine.cli"]
DATASET = ROOT / "evals" / "support_refund.yaml"
PASSING = ["small-refund", "late-chair-approved", "desk-in-full-denied", "another-customers-order"]


async def airlock_eval(settings: Settings, *args: str) -> tuple[int, str, str]:
    """``airlock eval ... --as alice --approver bob``, both proven by their passwords on stdin."""
    proc = await asyncio.create_subprocess_exec(
        *AIRLOCK, "eval", *args, "--as", "alice", "--approver", "bob", "--password-stdin", cwd=ROOT,
        env=cli_env(settings), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(f"{PASSWORD}\n{PASSWORD}\n".encode())
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_shipped_dataset_scores_each_case_and_is_stored_and_shown(web: Web) -> None:
    settings = web.settings
    support.reset_demo_ledger(settings.db_url)
    code, out, err = await airlock_eval(settings, str(DATASET), "--json")
    assert code == 0, err
    report = json.loads(out)
    [version] = report["versions"]
    cases = {c["case_id"]: c for c in version["cases"]}
    assert [c for c in PASSING if not cases[c]["passed"]] == [], {c: cases[c]["failures"] for c in PASSING}
    failed = cases["designed-to-fail"]
    assert not failed["passed"] and failed["status"] == "completed"
    assert failed["failures"] == [
        "outcomes.issue_refund: expected executed for every call, got ['rejected']",
        "decisions.issue_refund: expected allow for every call, got ['require_approval']"]
    assert cases["late-chair-approved"]["calls"] == [
        {"tool": "issue_refund", "decision": "require_approval", "outcome": "executed"}]
    summary = version["summary"]
    assert (summary["cases"], summary["passed"], summary["success_rate"], summary["escalations"]) == (5, 4, 0.8, 2)
    assert version["workflow"] == "support-refund" and version["run_workflow"].startswith("support-refund-eval-")
    assert not list(Path(settings.workflows_dir or ".").glob("*eval*"))  # the derived definition is gone

    stored = Database(settings.db_url).call(get_eval, eval_id=version["eval_id"])
    assert stored is not None and stored.dataset == "support-refund" and stored.success_rate == 0.8
    assert stored.dataset_hash == report["dataset_hash"] and stored.started_by == "alice"
    assert [r.case_id for r in stored.results] == [*PASSING[:2], PASSING[2], PASSING[3], "designed-to-fail"]
    assert stored.results[-1].failures == failed["failures"] and stored.results[0].run_id == cases[PASSING[0]]["run_id"]

    async with httpx.AsyncClient(base_url=web.url) as http:
        page = await http.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        await http.post("/login", data={"username": "bob", "password": PASSWORD, "csrf": csrf, "next": "/stats"})
        stats = await http.get("/stats")
    assert stats.status_code == 200
    row = re.search(rf'<tr data-eval="{version["eval_id"]}">(.*?)</tr>', stats.text, re.S)
    assert row is not None, stats.text[-3000:]
    assert "support-refund" in row.group(1) and "4/5" in row.group(1) and "80.0%" in row.group(1)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_table_and_fail_under(client: Client, settings: Settings) -> None:
    support.reset_demo_ledger(settings.db_url)
    async with build_worker(client, settings):
        code, out, err = await airlock_eval(settings, str(DATASET), "--fail-under", "0.9")
    assert code == 1, err
    assert "success rate 80% is below --fail-under 90%" in err
    assert re.search(r"designed-to-fail\s+│\s+FAIL", out), out
    assert "4/5 passed (80%)" in out and "2 escalation(s)" in out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_compare_shows_what_the_candidate_changes(client: Client, settings: Settings, tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    candidate = yaml.safe_load((tmp_path / "support_refund.yaml").read_text())
    candidate["version"] = 2
    candidate["model"].update(price_in_per_1k=1.0, price_out_per_1k=2.0)  # a dearer model...
    candidate["limits"]["max_tool_calls"] = 1  # ...and a limit the lamp case (two calls) no longer fits
    (tmp_path / "support_refund_v2.yaml").write_text(yaml.safe_dump(candidate, sort_keys=False))
    async with build_worker(client, settings):
        code, out, err = await airlock_eval(settings, str(DATASET), "--compare", str(tmp_path / "support_refund.yaml"),
                                            str(tmp_path / "support_refund_v2.yaml"), "--json")
    assert code == 0, err
    report = json.loads(out)
    before, after = report["versions"]
    assert (before["version"], after["version"]) == (1, 2)
    assert before["definition_hash"] != after["definition_hash"]
    assert before["summary"]["success_rate"] == 0.8 and after["summary"]["success_rate"] == 0.6
    lamp = next(c for c in after["cases"] if c["case_id"] == "small-refund")
    assert lamp["status"] == "limit_reached" and lamp["failures"][0].startswith("status: expected completed, got "
                                                                                 "limit_reached (max_tool_calls (1)")
    diff = report["difference"]
    assert diff["success_rate"] == -0.2 and diff["newly_failing"] == ["small-refund"] and diff["newly_passing"] == []
    assert before["summary"]["cost_per_success"] == 0.0 and diff["cost_per_success"] > 0
    assert diff["escalations"] == 0

    db = Database(settings.db_url)
    stored = db.call(recent_evals, workflow="support-refund")
    assert {e.eval_id for e in stored} == {before["eval_id"], after["eval_id"]}
    assert len({e.comparison for e in stored}) == 1 and stored[0].comparison is not None
    assert {e.version: e.success_rate for e in stored} == {1: 0.8, 2: 0.6}
