"""``airlock policy shadow`` on decisions recorded by real runs (real Temporal, OPA, SQLite and PostgreSQL): a
candidate that flips a known decision is reported exactly, gates with --fail-on, and a broken one is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from temporalio.client import Client

from engine.boundary.shadow import Candidate, Item, ShadowError
from engine.config import Settings
from engine.local import processes as stack
from engine.local.processes import find_binary
from engine.runtime.worker import build_worker
from engine.spec import load_spec
from engine.spec.script import dump_script
from engine.store import shadow_reports
from engine.store.db import Database
from tests.helpers import ROOT, refund, start_run, wait_for_inbox, write_spec
from tests.integration.test_cli import airlock
from tools import support


def candidate(tmp_path: Path, old: str, new: str) -> Path:
    """The shipped policies with one line of the refund policy changed."""
    folder = tmp_path / "candidate"
    shutil.copytree(ROOT / "policies", folder)
    rego = folder / "support_refund.rego"
    assert old in rego.read_text()
    rego.write_text(rego.read_text().replace(old, new))
    return folder


async def test_a_candidate_that_flips_known_decisions_is_reported_and_gated(client: Client, settings: Settings,
                                                                           tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    refunds = (("25.00", "A-1001"), ("180.00", "A-1002"), ("900.00", "A-1003"))
    write_spec(tmp_path, [])
    (tmp_path / "turns.yaml").write_text(dump_script({"cases": [  # one spec; each run's message picks its refund
        {"match": f"refund {amount}", "turns": [{"tool_calls": [refund(order, amount)]}, {"content": "done"}]}
        for amount, order in refunds]}))
    spec = load_spec(tmp_path / "spec.yaml", project_dir=ROOT)
    async with build_worker(client, settings):
        handles = {}
        for amount, _ in refunds:
            handles[amount] = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                              run_input={"customer_id": "cus_ana", "message": f"refund {amount}"})
        assert (await handles["25.00"].result()).tool_calls[0].outcome == "executed"
        assert (await handles["900.00"].result()).tool_calls[0].outcome == "denied"
        await wait_for_inbox(settings.db_url, handles["180.00"].id)  # decided: waits for a person
        await handles["180.00"].terminate()

    raised = candidate(tmp_path, "_auto_limit := 50", "_auto_limit := 200")  # 180 would go through alone
    code, out, err = await airlock(settings, "policy", "shadow", "--policies", str(raised), "--since", "1h",
                                   "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["decided"], report["same"], report["transitions"]) == (3, 2, {"require_approval->allow": 1})
    [change] = report["changes"]
    assert change["run_id"] == handles["180.00"].id and change["tool"] == "issue_refund"
    assert change["args"]["amount"] == "180.00"
    assert change["old_reasons"] == ["refunds above 50 need one approval by support-leads"]
    assert change["new"] == "allow" and report["revision"].startswith("sha256:")

    code, out, _ = await airlock(settings, "policy", "shadow", "--policies", str(raised), "--since", "1h",
                                 "--save", "--label", "raise the automatic limit (pull request 7)", "--json")
    saved = json.loads(out)["saved"]
    db = Database(settings.db_url)
    stored = db.call(shadow_reports.get_report, report_id=saved)
    assert stored is not None and (stored.label, stored.decided, stored.transitions) == (
        "raise the automatic limit (pull request 7)", 3, {"require_approval->allow": 1})
    [kept], total = db.call(shadow_reports.report_changes, report_id=saved, tenants=["default"])
    assert total == 1 and (kept.run_id, kept.tenant, kept.args["amount"]) == (handles["180.00"].id, "default",
                                                                              "180.00")
    assert db.call(shadow_reports.report_changes, report_id=saved, tenants=["elsewhere"]) == ([], 0)
    code, out, _ = await airlock(settings, "policy", "shadow", "--policies", str(raised), "--since", "1h",
                                 "--fail-on", "*->allow")
    assert code == 1
    assert "require_approval->allow" in out and "forbidden changes: require_approval->allow ×1" in out
    code, out, _ = await airlock(settings, "policy", "shadow", "--policies", str(raised), "--since", "1h",
                                 "--fail-on", "deny->allow", "--workflow", "refund-test")
    assert code == 0 and "3 recorded decision(s)" in out
    code, out, _ = await airlock(settings, "policy", "shadow", "--policies", str(raised), "--since", "1h",
                                 "--workflow", "another-workflow", "--json")
    assert json.loads(out)["decided"] == 0

    unchanged = candidate(tmp_path / "same", "_auto_limit := 50", "_auto_limit := 50")
    code, out, _ = await airlock(settings, "policy", "shadow", "--policies", str(unchanged), "--since", "1h",
                                 "--fail-on", "any", "--json")
    assert code == 0 and json.loads(out)["transitions"] == {} and json.loads(out)["same"] == 3

    stricter = candidate(tmp_path / "strict", "_approval_limit := 500", "_approval_limit := 20")
    code, out, _ = await airlock(settings, "policy", "shadow", "--policies", str(stricter), "--since", "1h",
                                 "--json")
    assert json.loads(out)["transitions"] == {"allow->deny": 1, "require_approval->deny": 1}

    broken = candidate(tmp_path / "broken", "_auto_limit := 50", "_auto_limit := ")
    code, _, err = await airlock(settings, "policy", "shadow", "--policies", str(broken), "--since", "1h")
    assert code == 2 and "does not compile" in err and f"{broken}/support_refund.rego" in err
    code, _, err = await airlock(settings, "policy", "shadow", "--policies", str(raised), "--fail-on", "deny->ok")
    assert code == 2 and "--fail-on 'deny->ok'" in err


async def test_a_shadow_policy_decides_beside_the_policy_and_changes_nothing(client: Client, settings: Settings,
                                                                            tmp_path: Path) -> None:
    """The treasury policy as the support workflow's shadow: it would deny every refund (not one of its tools).
    The refunds go as the support policy decides; each disagreement is recorded, counted and shown."""
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "25.00")]}, {"content": "done"}],
                      shadow_policy="airlock.treasury_payout")
    missing = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "30.00")]}, {"content": "done"}],
                         "missing.yaml", name="refund-missing-shadow", shadow_policy="airlock.no_such_policy")
    async with build_worker(client, settings):
        run = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                              run_input={"customer_id": "cus_ana"})
        other = await start_run(client, task_queue=settings.temporal.task_queue, spec=missing,
                                run_input={"customer_id": "cus_ana"})
        assert (await run.result()).tool_calls[0].outcome == "executed"  # the policy decided, not its shadow
        assert (await other.result()).tool_calls[0].outcome == "executed"  # a shadow that fails changes nothing
    assert sorted(str(r.amount) for r in support.list_refunds(settings.db_url)) == ["25.00", "30.00"]

    code, out, err = await airlock(settings, "stats", "--since", "1h", "--json")
    assert code == 0, err
    shadow = json.loads(out)["shadow"]
    assert shadow == {"decisions": 2, "disagreements": 2, "by_transition": {"allow->deny": 2},
                      "packages": ["airlock.no_such_policy", "airlock.treasury_payout"]}
    code, out, _ = await airlock(settings, "runs", "show", run.id)
    out = " ".join(out.split())  # folded to the terminal's width
    assert ("issue_refund: allow" in out and "shadow policy airlock.treasury_payout would have: deny — tool "
            "issue_refund is not allowed in this workflow" in out), out
    code, out, _ = await airlock(settings, "runs", "show", other.id)
    out = " ".join(out.split())
    assert ("shadow policy airlock.no_such_policy would have: deny — policy unavailable; no policy module declares "
            "package airlock.no_such_policy") in out
    code, out, _ = await airlock(settings, "stats", "--since", "1h")
    assert "2 disagreement(s), allow->deny 2" in out


def test_the_candidate_answers_the_rule_the_boundary_queries_and_only_a_package(tmp_path: Path) -> None:
    """``AIRLOCK_OPA__RULE`` names the rule the boundary asks of each package: the candidate asks the same one."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.rego").write_text('package airlock.p\n\nverdict := {"allow": true, "reasons": ["ok"]}\n'
                                     'decision := {"allow": false, "reasons": ["the other rule"]}\n')
    item = Item(decision_id="d1", run_id="r1", workflow="w", tool="t", package="airlock.p", outcome="allow",
                reasons=["ok"], input={"tool": {"name": "t", "args": {}}})
    with Candidate(find_binary("opa", ROOT), policies, rule="verdict") as shadow:
        [decided] = shadow.decide([item])
        assert (decided.outcome, decided.reasons) == ("allow", ["ok"])
        with pytest.raises(ShadowError, match="not a Rego package name"):
            shadow.decide([item.model_copy(update={"package": "airlock.p\n"})])
    with pytest.raises(ShadowError, match="rule"):
        Candidate(find_binary("opa", ROOT), policies, rule="verdict with input as {}")


def _item(n: int, args: dict[str, object]) -> Item:
    return Item(decision_id=f"d{n}", run_id=f"r{n}", workflow="w", tool="t", package="odd", outcome="allow",
                reasons=[], input={"tool": {"name": "t", "args": args}})


def test_an_input_the_candidate_fails_on_is_a_denial_and_counted_and_opa_failing_is_an_error(
        tmp_path: Path) -> None:
    """A candidate whose rule conflicts on one recorded input: that decision is read as the boundary reads an OPA
    error (a denial, policy unavailable) and counted; the others are decided. OPA failing for a reason of its own
    (its bundle gone) is an error, never a report of denials."""
    (tmp_path / "odd.rego").write_text(
        "package odd\nimport rego.v1\n"
        "decision := {\"allow\": true} if input.tool.args.a\n"
        "decision := {\"allow\": false} if input.tool.args.b\n")
    with Candidate(stack.find_binary("opa"), tmp_path) as candidate:
        decided = candidate.decide([_item(1, {"a": True}), _item(2, {"a": True, "b": True}), _item(3, {"b": True})])
        assert [d.outcome for d in decided] == ["allow", "deny", "deny"]
        assert "policy unavailable" in decided[1].reasons and candidate.failed == ["d2"]
        shutil.rmtree(candidate._tmp.name)  # the staged bundle, gone under OPA
        with pytest.raises(ShadowError, match="opa eval of the candidate failed"):
            candidate.decide([_item(4, {"a": True}), _item(5, {"b": True})])
