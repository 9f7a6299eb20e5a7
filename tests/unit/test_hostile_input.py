"""Hostile specs and inputs get a located error and exit 2: no hang, no traceback, nothing started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.boundary.inputs import MAX_DEPTH, parse_object
from engine.cli import app
from engine.errors import InputError, SpecError
from engine.spec import load_spec, parse_duration
from tests.helpers import ROOT

runner = CliRunner()
ENV = {"AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_TEMPORAL__ADDRESS": "127.0.0.1:1"}
GOOD = "name: w\nversion: 1\nmodel: {provider: scripted, script: turns.yaml}\nsystem_prompt: hi\npolicy: airlock.w\n"


def _write(tmp_path: Path, text: str | bytes, name: str = "w.yaml") -> Path:
    (tmp_path / "turns.yaml").write_text("turns:\n  - content: hi\n")
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _issues(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path, project_dir=ROOT)
    return [str(i) for i in caught.value.issues]


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
        f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(9))
    started = time.perf_counter()
    [issue] = _issues(_write(tmp_path, bomb))
    assert time.perf_counter() - started < 2
    assert issue.endswith(":2: (yaml): YAML aliases (*name) are not allowed in a spec")


def test_duplicate_keys_are_errors_with_their_line(tmp_path: Path) -> None:
    [issue] = _issues(_write(tmp_path, GOOD + "version: 2\n"))
    assert issue.endswith(":6: (yaml): duplicate key 'version'")


def test_a_spec_that_is_not_utf8_or_too_large_is_refused(tmp_path: Path) -> None:
    [issue] = _issues(_write(tmp_path, GOOD.encode() + b"description: caf\xe9\n"))
    assert issue.endswith(f":1: (file): w.yaml is not UTF-8 text (byte {len(GOOD) + len('description: caf')})")
    [issue] = _issues(_write(tmp_path, GOOD + "description: '" + "x" * 300_000 + "'\n"))
    assert "(file): w.yaml is" in issue and "bytes; at most 262144" in issue


@pytest.mark.parametrize("line, field, message", [
    ("approval: {timeout: 999999999d}", "approval.timeout", "must be between 1s and 365d"),
    ("approval: {timeout: 99999999999d}", "approval.timeout", "valid timedelta"),
    ("approval: {timeout: 400d}", "approval.timeout", "must be between 1s and 365d"),
    ("limits: {max_steps: 1e29}", "limits.max_steps", "valid integer"),
    ("limits: {max_steps: 100000000000000000000000000000}", "limits.max_steps", "less than or equal to 1000"),
    ("model: {provider: scripted, script: turns.yaml, timeout_s: 1e300}", "model.timeout_s", "less than or equal"),
    ("model: {provider: scripted, script: turns.yaml, temperature: 9}", "model.temperature", "less than or equal"),
])
def test_numbers_in_a_spec_are_bounded(tmp_path: Path, line: str, field: str, message: str) -> None:
    key = line.split(":")[0]
    text = "\n".join(x for x in GOOD.splitlines() if not x.startswith(key + ":")) + "\n" + line + "\n"
    issues = _issues(_write(tmp_path, text))
    assert any(f": {field}: " in i and message in i for i in issues), issues


def test_an_enormous_duration_is_not_a_crash() -> None:
    assert parse_duration("99999999999d") == "99999999999d"  # left for the caller's own check to refuse


@pytest.mark.parametrize("raw, problem", [
    ('{"amount": NaN}', "NaN is not a JSON number"),
    ('{"amount": -Infinity}', "-Infinity is not a JSON number"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
    ('{"a": ' * 40 + "1" + "}" * 40, f"nested deeper than {MAX_DEPTH} levels"),
    (json.dumps({"blob": "x" * 300_000}), "bytes; at most 262144 are accepted"),
    ("[1, 2]", "must be a JSON object, got list"),
])
def test_run_input_limits(raw: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        parse_object(raw, "--input")


def test_cli_input_problems_exit_2_and_start_nothing(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for value, problem in ((f"@{deep}", "nested deeper than"), ('{"x": NaN}', "NaN is not a JSON number")):
        result = runner.invoke(app, ["run", str(ROOT / "workflows/support_refund.yaml"), "--as", "alice",
                                     "--input", value], env=ENV)
        assert result.exit_code == 2 and problem in result.output, result.output


def test_validate_reports_a_bomb_and_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, "a: &a [x, x]\nb: [*a, *a]\n")
    result = runner.invoke(app, ["validate", str(path)], env=ENV)
    assert result.exit_code == 2 and "YAML aliases (*name) are not allowed" in result.output


@pytest.mark.parametrize("line, problem", [
    ('graph: "workflows.graphs.receipt:append_receipt"', "graph: workflows.graphs.receipt:append_receipt must take "
                                                         "0 argument(s)"),
    ('graph: "tools.support:lookup_order"', "graph: tools.support:lookup_order must take 0 argument(s)"),
    ('input_guard: {redact: "tools.support:RefundArgs"}', "input_guard.redact: module 'tools.support' has no "
                                                          "function 'RefundArgs' (RefundArgs is a class)"),
    ('input_guard: {redact: "tools.support:lookup_order"}', "input_guard.redact: tools.support:lookup_order must "
                                                            "take 1 argument(s)"),
])
def test_import_paths_must_name_the_right_kind_of_thing(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path, GOOD + line + "\n")
    assert _issues(path) == [f"{path}:6: {problem}"]
    assert load_spec(_write(tmp_path, GOOD + 'graph: "workflows.graphs.receipt:receipt_graph"\n'), project_dir=ROOT)


BROKEN_MODULES = {
    "syn.py": "def lookup(:\n",
    "boom.py": "raise KeyError('X')\n",
    "hints.py": ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
                 "from pydantic import BaseModel\n"
                 "if TYPE_CHECKING:\n    from decimal import Decimal\n\n\nclass Args(BaseModel):\n    n: int\n\n\n"
                 "def tool(args: Args, ctx: Decimal) -> dict:\n    return {}\n"),
    "ok.py": ("from pydantic import BaseModel\n\n\nclass Args(BaseModel):\n    n: int\n\n\n"
              "def tool(args: Args, ctx: object) -> dict:\n    return {}\n"),
}


def test_broken_project_modules_are_located_errors_and_do_not_hide_good_workflows(tmp_path: Path) -> None:
    # A separate process: this project's own ``tools`` package is already imported here.
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools/__init__.py").write_text("")
    for name, text in BROKEN_MODULES.items():
        (tmp_path / "tools" / name).write_text(text)
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "turns.yaml").write_text("turns:\n  - content: hi\n")
    for module in ("syn", "boom", "hints", "ok"):
        (workflows / f"{module}.yaml").write_text(GOOD.replace("name: w", f"name: {module}")
                                                  + f"tools: ['tools.{module}:tool']\n")
    env = {**os.environ, "AIRLOCK_PROJECT_DIR": str(tmp_path)}
    expected = {"syn": "tools[0]: importing module 'tools.syn' failed: SyntaxError",
                "boom": "tools[0]: importing module 'tools.boom' failed: KeyError: 'X'",
                "hints": "tools[0]: tools.hints:tool: its type hints cannot be read: NameError"}
    for module, problem in expected.items():
        done = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(workflows / f"{module}.yaml")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and f"{module}.yaml:6: {problem}" in done.stderr + done.stdout, done
        assert "Traceback" not in done.stderr
    served = subprocess.run([sys.executable, "-c", "from pathlib import Path; from engine.runtime.definitions import "
                             "DefinitionRegistry; print(sorted(s.name for s in "
                             f"DefinitionRegistry(Path('{workflows}'), "
                             f"Path('{tmp_path}')).specs()))"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert served.returncode == 0 and served.stdout.strip() == "['ok']", served
