"""The spec loader: resolved fields and errors located by file, line and field."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import SpecError
from engine.spec import ResolvedSpec, WorkflowSpec, definition_hash, load_spec
from engine.spec.loader import _HASHED_WHEN_SET
from tests.helpers import ROOT

GOOD = """\
name: refund-test
version: 2
model:
  provider: scripted
  script: turns.yaml
system_prompt: Be careful.
tools:
  - tools.support:lookup_order
  - tools.support:issue_refund
policy: airlock.support_refund
approval:
  timeout: 30m
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "turns.yaml").write_text("turns: []\n")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _issues(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path, project_dir=ROOT)
    return [str(i) for i in info.value.issues]


def test_load_spec_resolves_tools_prompt_and_script(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD), project_dir=ROOT)
    assert [t.name for t in spec.tool_specs] == ["lookup_order", "issue_refund"]
    refund = spec.tool("issue_refund")
    assert refund and refund.consequential and set(refund.parameters["required"]) == {"order_id", "amount", "reason"}
    assert spec.approval.timeout == timedelta(minutes=30)
    assert spec.model.script == str(tmp_path / "turns.yaml")
    assert spec.prompt_text == "Be careful." and spec.prompt_hash and len(spec.prompt_hash) == 64


def test_prompt_hash_changes_with_prompt(tmp_path: Path) -> None:
    first = load_spec(_write(tmp_path, GOOD), project_dir=ROOT).prompt_hash
    second = load_spec(_write(tmp_path, GOOD.replace("Be careful.", "Be bold.")), project_dir=ROOT).prompt_hash
    assert first != second


def test_unknown_key_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "colour: blue\n")
    assert _issues(path) == [f"{path}:13: colour: unknown key"]


def test_nested_wrong_type_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "limits:\n  max_steps: many\n")
    [issue] = _issues(path)
    assert issue.startswith(f"{path}:14: limits.max_steps: Input should be a valid integer")


def test_unknown_tool_and_bad_import_path_are_located(tmp_path: Path) -> None:
    text = GOOD.replace("tools.support:lookup_order", "tools.support:wire_money").replace(
        "tools.support:issue_refund", "not a path")
    path = _write(tmp_path, text)
    issues = _issues(path)
    assert issues[0] == f"{path}:8: tools[0]: module 'tools.support' has no function 'wire_money'"
    assert issues[1].startswith(f"{path}:9: tools[1]: 'not a path' is not an import path")


def test_missing_module_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("tools.support:lookup_order", "tools.nowhere:lookup"))
    assert _issues(path)[0].startswith(f"{path}:8: tools[0]: cannot import module 'tools.nowhere'")


def test_missing_prompt_file_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("system_prompt: Be careful.", "system_prompt_file: prompts/none.md"))
    [issue] = _issues(path)
    assert issue.startswith(f"{path}:6: system_prompt_file: prompt file ") and issue.endswith("does not exist")


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "limits: [unclosed\n")
    [issue] = _issues(path)
    assert issue.startswith(f"{path}:14: (yaml):")


def test_missing_required_fields_listed_together(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\n")
    issues = _issues(path)
    assert {i.split(": ")[1] for i in issues} >= {"version", "model", "policy"}


def test_python_spec_loads_same_model() -> None:
    spec = load_spec(ROOT / "workflows/support_refund_strict.py", project_dir=ROOT)
    assert spec.name == "support-refund-strict" and spec.limits.max_tool_calls == 3
    assert spec.graph == "workflows.graphs.receipt:receipt_graph"
    assert [t.name for t in spec.tool_specs] == ["lookup_order", "issue_refund"]


def test_shipped_yaml_workflows_are_valid() -> None:
    for path in sorted((ROOT / "workflows").glob("*.yaml")):
        assert load_spec(path, project_dir=ROOT).name


def test_model_fallbacks_budgets_and_guard_are_checked_where_they_are_written(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "input_guard:\n  max_chars: 0\n  redact: tools.guards:no_such_hook\n"
                                   "limits:\n  max_cost: -1\n")
    text = path.read_text().replace("  script: turns.yaml\n", "  script: turns.yaml\n  fallbacks:\n"
                                    "    - {provider: openai, timeout_s: 0, colour: blue}\n")
    path.write_text(text)
    issues = _issues(path)
    assert any(i.endswith(":7: model.fallbacks[0].timeout_s: Input should be greater than 0") for i in issues)
    assert any(i.endswith(":7: model.fallbacks[0].colour: unknown key") for i in issues)
    assert any(i.endswith(":16: input_guard.max_chars: Input should be greater than or equal to 1") for i in issues)
    assert any(i.endswith(":19: limits.max_cost: Input should be greater than 0") for i in issues)


def test_a_redaction_hook_that_does_not_exist_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "input_guard:\n  redact: tools.guards:no_such_hook\n")
    assert _issues(path) == [f"{path}:14: input_guard.redact: module 'tools.guards' has no function 'no_such_hook'"]


def test_routes_and_output_schema_resolve(tmp_path: Path) -> None:
    (tmp_path / "cheap.yaml").write_text("turns: []\n")
    path = _write(tmp_path, GOOD + "routes:\n  tool_results:\n    provider: scripted\n    script: cheap.yaml\n"
                                   "output_schema: tools.support:RefundOutcome\n")
    spec = load_spec(path, project_dir=ROOT)
    assert spec.model_for("tool_results").script == str(tmp_path / "cheap.yaml")
    assert spec.model_for("plan") == spec.model
    assert spec.output_json_schema and spec.output_json_schema["title"] == "RefundOutcome"
    plain = load_spec(_write(tmp_path, GOOD), project_dir=ROOT)
    assert plain.prompt_hash != spec.prompt_hash  # the output schema is part of what the model is asked


def test_unknown_step_classes_and_output_models_are_located(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "routes:\n  summarize:\n    provider: scripted\n    script: gone.yaml\n"
                                   "output_schema: tools.support:RefundArgs_\n")
    issues = _issues(path)
    assert f"{path}:14: routes.summarize: unknown step class; the agent graph has: plan, tool_results, repair" \
        in issues
    assert any(i.startswith(f"{path}:16: routes.summarize.script: script file ") for i in issues)
    assert f"{path}:17: output_schema: tools.support:RefundArgs_ is not a pydantic model class" in issues


@pytest.mark.parametrize("line", ["source: elsewhere.yaml", "prompt_text: Obey me.", "prompt_hash: abc",
                                  "tool_specs: []", "output_json_schema: {}", "definition_hash: sha256:0"])
def test_what_the_loader_fills_in_is_not_the_authors_to_set(tmp_path: Path, line: str) -> None:
    path = _write(tmp_path, GOOD + line + "\n")
    assert _issues(path) == [f"{path}:13: {line.split(':')[0]}: unknown key"]


def test_a_python_spec_may_not_hand_over_a_resolved_one(tmp_path: Path) -> None:
    good = _write(tmp_path, GOOD)
    module = tmp_path / "resolved_spec.py"
    module.write_text(f"from engine.spec import load_spec\n\nspec = load_spec({str(good)!r})\n")
    issues = _issues(module)
    assert f"{module}:1: prompt_text: unknown key" in issues and f"{module}:1: tool_specs: unknown key" in issues


def test_a_loaded_spec_is_resolved_and_hashed_as_recorded(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD), project_dir=ROOT)
    assert isinstance(spec, ResolvedSpec) and spec.definition_hash == definition_hash(spec)
    assert spec.source == str(tmp_path / "spec.yaml")
    # The JSON a run's history holds: the authored fields, then what the loader filled in (recorded runs replay).
    assert list(spec.model_dump(mode="json"))[-6:] == ["source", "prompt_text", "prompt_hash", "tool_specs",
                                                       "output_json_schema", "definition_hash"]
    assert ResolvedSpec.model_validate(spec.model_dump(mode="json")) == spec
    assert set(ResolvedSpec.model_fields) - set(WorkflowSpec.model_fields) == set(list(spec.model_dump())[-6:])


@pytest.mark.parametrize("path", sorted((ROOT / "tests/histories").glob("*.json")), ids=lambda p: p.name)
def test_a_recorded_runs_definition_has_todays_fields_and_validates(path: Path) -> None:
    payloads = [base64.b64decode(data) for data in re.findall(r'"data": *"([A-Za-z0-9+/=]+)"', path.read_text())]
    [recorded] = {json.dumps(json.loads(p)["run"]["spec"]) for p in payloads if p.startswith(b'{"run":{')}
    spec = json.loads(recorded)
    # Fields added since (unset in older definitions, and then left out of the hash) may be absent; no other.
    assert list(spec) == [f for f in ResolvedSpec.model_fields if f in spec or f not in _HASHED_WHEN_SET]
    resolved = ResolvedSpec.model_validate(spec)
    assert all(getattr(resolved, f) is None for f in _HASHED_WHEN_SET - set(spec))
    assert resolved.model_dump(mode="json", exclude=_HASHED_WHEN_SET - set(spec)) == spec


@pytest.mark.parametrize("body, line, expected", [
    # a bad field in WorkflowSpec(...) at import: the line of the call
    ("from engine.spec import ModelSpec, WorkflowSpec\n\n\nspec = WorkflowSpec(\n    name='Bad Name', version=1,\n"
     "    model=ModelSpec(), system_prompt='p', policy='airlock.x')\n", 4, "name: String should match pattern"),
    # the same inside spec(): the line in the function
    ("from engine.spec import ModelSpec, WorkflowSpec\n\n\ndef spec():\n    limits = {'max_steps': 0}\n"
     "    return WorkflowSpec(name='w', version=1, model=ModelSpec(), system_prompt='p', policy='airlock.x',\n"
     "                        limits=limits)\n", 6, "limits.max_steps: Input should be greater than or equal to 1"),
    ("import os\n\nvalue = 1 / 0\n", 3, "(module): import failed: ZeroDivisionError"),
    ("x = 1\ndef broken(:\n", 2, "(module): import failed: SyntaxError"),
    ("def spec():\n    raise RuntimeError('no')\n", 2, "spec: spec() failed: RuntimeError: no"),
])
def test_a_python_spec_s_problems_name_their_line(tmp_path: Path, body: str, line: int, expected: str) -> None:
    module = tmp_path / "workflow_spec.py"
    module.write_text(body)
    [issue] = _issues(module)
    assert issue.startswith(f"{module}:{line}: {expected}"), issue


def test_a_broken_script_is_reported_by_the_spec_check_in_its_own_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    (tmp_path / "turns.yaml").write_text("cases:\n  - match: lamp\n    turns:\n      - tool_calls: [{nme: f}]\n")
    issues = _issues(path)
    assert any(i.startswith(f"{tmp_path / 'turns.yaml'}:4: cases[0].turns[0].tool_calls[0]") for i in issues), issues


def test_a_shadow_policy_is_another_package_and_unset_leaves_the_hash_alone(tmp_path: Path) -> None:
    plain = load_spec(_write(tmp_path, GOOD), project_dir=ROOT)
    assert plain.shadow_policy is None
    shadowed = load_spec(_write(tmp_path, GOOD + "shadow_policy: airlock.support_refund_next\n"), project_dir=ROOT)
    assert shadowed.shadow_policy == "airlock.support_refund_next"
    assert shadowed.definition_hash != plain.definition_hash  # what decides beside the policy is the definition's
    issues = _issues(_write(tmp_path, GOOD + "shadow_policy: airlock.support_refund\n"))
    assert any("shadow_policy is the policy itself (airlock.support_refund)" in i for i in issues), issues
    assert any(i.endswith("shadow_policy: String should match pattern '^[a-z_][a-z0-9_]*(\\.[a-z_][a-z0-9_]*)*$'")
               for i in _issues(_write(tmp_path, GOOD + "shadow_policy: Not-A-Package\n")))


def test_the_shipped_definitions_keep_their_hashes_when_fields_are_added_unset() -> None:
    """A run an older CLI started pins the definition's hash: adding an unset field must not change it."""
    from engine.spec.loader import _hash

    spec = load_spec(ROOT / "workflows" / "support_refund.yaml", project_dir=ROOT)
    body = spec.model_dump(mode="json", exclude={"source", "definition_hash", *_HASHED_WHEN_SET})
    assert _hash(body) == spec.definition_hash
