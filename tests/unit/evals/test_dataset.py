"""Eval datasets are read strictly, and every problem is located as FILE:LINE: field: message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.errors import SpecError
from engine.evals.dataset import CASE_KEY, load_dataset
from engine.evals.derive import derive
from engine.spec import load_spec
from engine.spec.models import InputGuardSpec
from engine.spec.script import load_script
from tests.helpers import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cases.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_dataset(path)
    return [str(issue) for issue in caught.value.issues]


GOOD = """\
workflow: support-refund
cases:
  - id: one
    input: {customer_id: cus_ana, message: "lamp"}
    turns:
      - content: "done"
    expect:
      outcomes: {issue_refund: [executed, denied]}
      output_contains: done
  - id: two
    input: {customer_id: cus_ana}
    turns:
      - content: "done"
"""


def test_the_shipped_dataset_loads() -> None:
    dataset = load_dataset(ROOT / "evals" / "support_refund.yaml")
    assert dataset.name == "support-refund" and len(dataset.data.cases) == 5
    assert "designed-to-fail" in [c.id for c in dataset.data.cases]


def test_a_dataset_loads_with_defaults_and_a_name_from_its_file(tmp_path: Path) -> None:
    dataset = load_dataset(write(tmp_path, GOOD))
    one, two = dataset.data.cases
    assert dataset.name == "cases" and len(dataset.sha256) == 64
    assert one.expect.status == "completed" and one.approve == "reject"
    assert one.expect.output_contains == ["done"]
    assert one.run_input() == {"customer_id": "cus_ana", "message": "lamp"}
    assert two.run_input() == {"customer_id": "cus_ana", CASE_KEY: "two"}  # no message: the id finds the run


def test_unknown_keys_and_bad_values_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, """\
workflow: support-refund
cases:
  - id: one
    input: {customer_id: cus_ana}
    expect:
      outcome: {issue_refund: executed}
      decisions: {issue_refund: maybe}
      max_cost: -1
    approve: sometimes
""")
    found = problems(path)
    assert f"{path}:6: cases[0].expect.outcome: unknown key" in found
    assert any(p.startswith(f"{path}:7: cases[0].expect.decisions.issue_refund") for p in found), found
    assert any(p.startswith(f"{path}:8: cases[0].expect.max_cost: ") for p in found), found
    assert any(p.startswith(f"{path}:9: cases[0].approve: ") for p in found), found


def test_duplicate_case_ids_point_at_the_second_case(tmp_path: Path) -> None:
    path = write(tmp_path, """\
workflow: w
cases:
  - id: same
    input: {}
  - id: same
    input: {}
""")
    assert problems(path) == [f"{path}:5: cases[1]: two cases have the id 'same'"]


def test_scripted_cases_with_the_same_message_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """\
workflow: w
cases:
  - {id: a, input: {message: hi}, turns: [{content: x}]}
  - {id: b, input: {message: hi}, turns: [{content: y}]}
""")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:4: cases[1]: cases 'a' and 'b' have scripted turns and the same input")


def test_yaml_problems_and_missing_fields_are_located(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "workflow: w\nworkflow: v\ncases: []\n")) == [
        f"{tmp_path / 'cases.yaml'}:2: (yaml): duplicate key 'workflow'"]
    found = problems(write(tmp_path, "cases:\n  - id: 'bad id!'\n    input: {}\n"))
    assert f"{tmp_path / 'cases.yaml'}:1: workflow: Field required" in found
    assert any(p.startswith(f"{tmp_path / 'cases.yaml'}:2: cases[0].id: ") for p in found), found
    assert problems(tmp_path / "missing.yaml") == [f"{tmp_path / 'missing.yaml'}:1: (file): no such file"]


def test_a_scripted_turn_is_checked_like_a_script(tmp_path: Path) -> None:
    path = write(tmp_path, """\
workflow: w
cases:
  - id: a
    input: {}
    turns:
      - tool_calls: [{name: x, arguments: {}}]
""")
    [problem] = problems(path)
    assert problem == f"{path}:6: cases[0].turns[0].tool_calls[0].arguments: unknown key"


def test_the_derived_definition_keeps_the_prompt_and_replays_each_case(tmp_path: Path) -> None:
    base = load_spec(ROOT / "workflows" / "support_refund.yaml", project_dir=ROOT)
    dataset = load_dataset(write(tmp_path, GOOD))
    derived = derive(dataset, base, tmp_path, ROOT)
    assert derived.spec.name.startswith("support-refund-eval-") and derived.spec.version == base.version
    assert derived.spec.prompt_hash == base.prompt_hash  # the model is told exactly what the workflow tells it
    assert derived.spec.definition_hash != base.definition_hash
    script = load_script(Path(derived.spec.model.script or ""))
    one, two = dataset.data.cases
    assert script.turns_for("lamp") == one.turns and script.turns_for("lamp!") != one.turns
    assert script.turns_for('{"customer_id": "cus_ana", "eval_case": "two"}') == two.turns
    assert script.turns is not None  # the workflow's own turns serve any other run
    other = derive(dataset, base, tmp_path, ROOT)  # a second eval of the same version, at the same time
    assert other.spec.name != derived.spec.name and not set(other.files) & set(derived.files)
    derived.remove()
    assert all(path.is_file() for path in other.files)  # one eval's end leaves the other's files alone
    other.remove()
    assert not any(tmp_path.glob("*eval*"))


def test_a_live_model_needs_turns_in_every_case_or_none(tmp_path: Path) -> None:
    base = load_spec(ROOT / "workflows" / "support_refund.yaml", project_dir=ROOT)
    body = yaml.safe_load(GOOD)
    body["model"] = {"provider": "openai", "name": "gpt-4o-mini", "price_in_per_1k": 0.5}
    del body["cases"][1]["turns"]
    dataset = load_dataset(write(tmp_path, yaml.safe_dump(body, sort_keys=False)))
    with pytest.raises(SpecError) as caught:
        derive(dataset, base, tmp_path, ROOT)
    [issue] = caught.value.issues
    assert "case 'two' has no turns, but other cases do" in issue.message and issue.line > 1
    body["cases"][1]["turns"] = [{"content": "ok"}]
    derived = derive(load_dataset(write(tmp_path, yaml.safe_dump(body, sort_keys=False))), base, tmp_path, ROOT)
    assert derived.spec.model.provider == "scripted" and derived.spec.model.price_in_per_1k == 0.5
    derived.remove()


def test_each_case_is_found_by_the_message_the_model_gets(tmp_path: Path) -> None:
    """The model gets the message as the workflow's input guard left it (redacted), and it may be long."""
    base = load_spec(ROOT / "workflows" / "support_refund.yaml", project_dir=ROOT)
    base = base.model_copy(update={"input_guard": InputGuardSpec(redact="tools.guards:redact_pii")})
    long = "My order A-1001 (" + "a lamp, (really) broken? " * 100 + ")"
    body = yaml.safe_load(GOOD)
    body["cases"][0]["input"]["message"] = "Refund A-1001, write to ana@example.com"
    body["cases"][1]["input"]["message"] = long
    dataset = load_dataset(write(tmp_path, yaml.safe_dump(body, sort_keys=False)))
    derived = derive(dataset, base, tmp_path, ROOT)
    script = load_script(Path(derived.spec.model.script or ""))
    one, two = dataset.data.cases
    assert script.turns_for("Refund A-1001, write to [email]") == one.turns
    assert script.turns_for(long) == two.turns
    derived.remove()
    body["cases"][1]["input"]["message"] = "Refund A-1001, write to bo@example.com"  # alike, once redacted
    with pytest.raises(SpecError, match="cases 'one' and 'two' have scripted turns and messages the model gets"):
        derive(load_dataset(write(tmp_path, yaml.safe_dump(body, sort_keys=False))), base, tmp_path, ROOT)
    assert not any(tmp_path.glob("*eval*"))
