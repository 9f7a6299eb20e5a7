"""Gate thresholds: the file read strictly with located errors, flags in its place, and each check's verdict.

Pure (``engine.gate``), plus ``airlock gate``'s refusals (exit 2) before it measures anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import SpecError
from engine.evals.scoring import Summary
from engine.gate import Check, EvalGate, ShadowGate, base_version, eval_checks, failed, load_gate, shadow_checks
from tests.helpers import ROOT

runner = CliRunner()
ENV = {"AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_TEMPORAL__ADDRESS": "127.0.0.1:1"}


def summary(passed: int, cases: int = 5) -> Summary:
    return Summary(cases=cases, passed=passed, success_rate=round(passed / cases, 4), cost=0.0,
                   cost_per_success=None, escalations=0, mean_latency_ms=None)


def verdicts(checks: list[Check]) -> dict[str, bool | None]:
    return {c.name: c.passed for c in checks}


def test_a_gate_file_is_read_with_paths_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "gate.yaml").write_text(
        "shadow:\n  policies: candidate\n  since: 24h\n  fail_on: [deny->allow, '*->allow']\n"
        "  max_changed_share: 0.05\n"
        "evals:\n  - dataset: evals/cases.yaml\n    base: ../base/workflows/x.yaml\n    workflow: workflows/x.yaml\n"
        "    min_success_rate: 0.8\n    max_drop: 0.1\n  - dataset: /abs/cases.yaml\n    workflow: support-refund\n")
    gate = load_gate(tmp_path / "gate.yaml")
    assert gate.shadow is not None and gate.shadow.policies == tmp_path / "candidate"
    assert gate.shadow.forbidden == {"deny->allow", "require_approval->allow"}
    assert gate.shadow.min_decisions == 1 and gate.shadow.max_changed is None
    first, second = gate.evals
    assert first.dataset == tmp_path / "evals/cases.yaml" and first.base == tmp_path / "../base/workflows/x.yaml"
    assert first.workflow == str(tmp_path / "workflows/x.yaml") and first.compares
    assert second.dataset == Path("/abs/cases.yaml") and second.workflow == "support-refund"
    assert not second.compares


@pytest.mark.parametrize(("text", "located"), [
    ("shadow:\n  max_changed_share: 1.5\n", "gate.yaml:2: shadow.max_changed_share: Input should be less than or "
                                            "equal to 1"),
    ("shadow:\n  fail_on:\n    - deny->ok\n", "gate.yaml:3: shadow.fail_on[0]: 'deny->ok' is not a transition"),
    ("shadow:\n  since: forever\n", "gate.yaml:2: shadow.since: use a number and a unit"),
    ("evals:\n  - dataset: a.yaml\n    min_sucess_rate: 0.9\n", "gate.yaml:3: evals[0].min_sucess_rate: unknown key"),
    ("evals:\n  - min_success_rate: 0.9\n", "gate.yaml:2: evals[0].dataset: Field required"),
    ("shadow: [1]\n", "gate.yaml:1: shadow: Input should be a valid dictionary"),
    ("shadow:\n  since: 1h\n  since: 2h\n", "gate.yaml:3: (yaml)"),
])
def test_a_bad_gate_file_is_refused_located(tmp_path: Path, text: str, located: str) -> None:
    (tmp_path / "gate.yaml").write_text(text)
    with pytest.raises(SpecError) as caught:
        load_gate(tmp_path / "gate.yaml")
    assert any(str(i).removeprefix(f"{tmp_path}/").startswith(located) for i in caught.value.issues), \
        caught.value.issues


def test_the_shipped_gate_file_loads() -> None:
    gate = load_gate(ROOT / "gate.yaml")
    assert gate.shadow is not None and gate.shadow.policies == ROOT / "policies"
    assert [e.dataset for e in gate.evals] == [ROOT / "evals/support_refund.yaml"] and gate.evals[0].compares


def test_shadow_checks_name_each_threshold_and_what_broke_it() -> None:
    gate = ShadowGate(fail_on=["*->allow"], max_changed=2, max_changed_share=0.1)
    checks = shadow_checks(gate, decided=10, transitions={"deny->allow": 1, "allow->deny": 2})
    assert verdicts(checks) == {"shadow.min_decisions": True, "shadow.fail_on": False, "shadow.max_changed": False,
                                "shadow.max_changed_share": False}
    by_name = {c.name: c for c in checks}
    assert by_name["shadow.fail_on"].value == "deny->allow ×1"
    assert by_name["shadow.max_changed_share"].value == "30.00% (3/10)"
    assert verdicts(shadow_checks(gate, decided=10, transitions={"allow->deny": 1})) == {
        "shadow.min_decisions": True, "shadow.fail_on": True, "shadow.max_changed": True,
        "shadow.max_changed_share": True}


def test_an_empty_window_fails_the_shadow_unless_allowed() -> None:
    assert failed(shadow_checks(ShadowGate(), decided=0, transitions={}))[0].name == "shadow.min_decisions"
    assert not failed(shadow_checks(ShadowGate(min_decisions=0, max_changed_share=0.0), decided=0,
                                    transitions={}))


def test_eval_checks_against_the_rate_and_the_base() -> None:
    gate = EvalGate(dataset=Path("d.yaml"), min_success_rate=0.8, max_drop=0.1, max_newly_failing=0)
    checks = eval_checks(gate, "support", summary(3), base=summary(4), newly_failing=["small-refund"])
    assert verdicts(checks) == {"evals[support].min_success_rate": False, "evals[support].max_drop": False,
                                "evals[support].max_newly_failing": False}
    assert [c.value for c in checks] == ["60% (3/5)", "80% -> 60%, a drop of 20 points", "1 (small-refund)"]
    assert not failed(eval_checks(gate, "support", summary(4), base=summary(4), newly_failing=[]))
    assert not failed(eval_checks(gate, "support", summary(5), base=summary(4), newly_failing=[]))
    # exactly the drop allowed passes (no float noise)
    assert not failed(eval_checks(EvalGate(dataset=Path("d"), max_drop=0.2), "s", summary(3), base=summary(4),
                                  newly_failing=[]))


def test_a_comparison_without_a_base_is_not_checked_and_does_not_fail() -> None:
    gate = EvalGate(dataset=Path("d.yaml"), max_drop=0.0, max_newly_failing=0)
    checks = eval_checks(gate, "s", summary(1), no_base="the base branch has no workflows/new.yaml")
    assert verdicts(checks) == {"evals[s].max_drop": None, "evals[s].max_newly_failing": None}
    assert checks[0].value == "not checked: the base branch has no workflows/new.yaml" and not failed(checks)


def test_the_base_version_is_the_file_at_the_same_place(tmp_path: Path) -> None:
    head = tmp_path / "head"
    assert base_version(head / "workflows/x.yaml", head, tmp_path / "base") == tmp_path / "base/workflows/x.yaml"
    assert base_version(tmp_path / "elsewhere/x.yaml", head, tmp_path / "base") is None


def test_the_command_refuses_a_bad_file_or_flag_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text("shadow:\n  max_changed: -1\n")
    result = runner.invoke(app, ["gate", "--config", str(bad)], env=ENV)
    assert result.exit_code == 2 and f"{bad}:2: shadow.max_changed: " in result.output
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    result = runner.invoke(app, ["gate", "--config", str(empty)], env=ENV)
    assert result.exit_code == 2 and "nothing to gate" in result.output
    result = runner.invoke(app, ["gate", "--config", str(empty), "--policies", "policies", "--fail-on", "a->b"],
                           env=ENV)
    assert result.exit_code == 2 and "--fail-on: 'a->b' is not a transition" in result.output
    result = runner.invoke(app, ["gate", "--config", str(empty), "--policies", "policies", "--only", "both"],
                           env=ENV)
    assert result.exit_code == 2 and "--only 'both'" in result.output


def test_the_command_refuses_a_missing_snapshot_or_a_broken_candidate(tmp_path: Path) -> None:
    result = runner.invoke(app, ["gate", "--only", "shadow", "--policies", str(ROOT / "policies"), "--recorded-db",
                                 f"sqlite:///{tmp_path / 'nothing.db'}"], env=ENV)
    assert result.exit_code == 2 and "nothing.db does not exist" in result.output
    assert not (tmp_path / "nothing.db").exists()
    (tmp_path / "secret").write_text("")
    result = runner.invoke(app, ["gate", "--only", "shadow", "--policies", str(ROOT / "policies"),
                                 "--recorded-db-file",
                                 str(tmp_path / "secret")], env=ENV)
    assert result.exit_code == 2 and "is empty" in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.rego").write_text("package airlock.x\ndecision := \n")
    (tmp_path / "snap.db").write_text("")
    result = runner.invoke(app, ["gate", "--only", "shadow", "--policies", str(broken), "--recorded-db",
                                 f"sqlite:///{tmp_path / 'snap.db'}"], env=ENV)
    assert result.exit_code == 2 and "does not compile" in result.output


def test_an_eval_dataset_that_does_not_load_is_refused_before_anything_runs(tmp_path: Path) -> None:
    bad = tmp_path / "cases.yaml"
    bad.write_text("workflow: support-refund\ncases:\n  - id: a\n    input: {}\n    expect: {status: done}\n")
    result = runner.invoke(app, ["gate", "--only", "evals", "--dataset", str(bad), "--min-success-rate", "0.9",
                                 "--as", "alice"], env=ENV)
    assert result.exit_code == 2 and f"{bad}:5: cases[0].expect.status: " in result.output
