"""``airlock eval`` refuses a bad dataset or a bad version with exit 2, located, before it starts anything."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from tests.helpers import ROOT

runner = CliRunner()
# A Temporal address nothing listens on: a command that tried to start a run would fail with 1, not 2.
ENV = {"AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_TEMPORAL__ADDRESS": "127.0.0.1:1"}


def test_a_bad_dataset_exits_2_with_each_problem_located(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workflow: support-refund\ncases:\n  - id: a\n    input: {}\n    expect: {status: done}\n")
    result = runner.invoke(app, ["eval", str(bad), "--as", "alice"], env=ENV)
    assert result.exit_code == 2
    assert f"{bad}:5: cases[0].expect.status: " in result.output
    assert not list(tmp_path.glob("*eval*"))


def test_an_unknown_version_exits_2_listing_the_workflows(tmp_path: Path) -> None:
    dataset = tmp_path / "cases.yaml"
    dataset.write_text("workflow: no-such-workflow\ncases:\n  - {id: a, input: {}}\n")
    result = runner.invoke(app, ["eval", str(dataset), "--as", "alice"],
                           env={**ENV, "AIRLOCK_WORKFLOWS_DIR": str(ROOT / "workflows")})
    assert result.exit_code == 2 and "no-such-workflow" in result.output
    both = runner.invoke(app, ["eval", str(dataset), "--workflow", "a", "--compare", "b", "c"], env=ENV)
    assert both.exit_code == 2 and "give --workflow or --compare V1 V2, not both" in both.output
