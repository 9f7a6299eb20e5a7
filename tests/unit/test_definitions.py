"""Definitions belong to the worker: what specs may name, how definitions resolve, which graphs may run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from langgraph.graph import END, START, StateGraph

from engine.errors import DefinitionError, SpecError
from engine.graph import AgentState, call_model
from engine.runtime import nodes
from engine.runtime.compiler import add_boundary, agent_graph
from engine.runtime.definitions import DefinitionRegistry, check_graph
from engine.spec import add_import_roots, load_spec
from engine.toolkit import check_import_path, import_object
from tests.helpers import ROOT

add_import_roots(ROOT)
BASE = {"version": 1, "system_prompt": "hi", "policy": "airlock.support_refund",
        "model": {"provider": "scripted", "script": "turns.yaml"}, "tools": ["tools.support:lookup_order"]}


def _spec(folder: Path, name: str = "w", file: str | None = None, **overrides: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "turns.yaml").write_text("turns:\n  - content: hi\n")
    path = folder / (file or f"{name}.yaml")
    path.write_text(yaml.safe_dump({**BASE, "name": name, **overrides}))
    return path


@pytest.mark.parametrize("path, problem", [
    ("os:system", "only the project's own packages"),
    ("builtins:eval", "only the project's own packages"),
    ("subprocess:run", "only the project's own packages"),
    ("tools.support:Session", "'Session' is not defined in tools.support"),  # imported there from sqlmodel
    ("tools.support:_private", "private names"),
    ("tools._hidden:x", "private names"),
    ("tools.support", "not an import path"),
])
def test_import_paths_outside_the_project_are_refused(path: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        import_object(path)


def test_project_import_paths_resolve() -> None:
    check_import_path("workflows.graphs.receipt:receipt_graph")
    assert callable(import_object("tools.guards:redact_pii"))


@pytest.mark.parametrize("field, value, where, problem", [
    ("input_guard", {"redact": "os:system"}, "input_guard.redact", "only the project's own packages"),
    ("graph", "os:getcwd", "graph", "only the project's own packages"),
    ("output_schema", "builtins:dict", "output_schema", "only the project's own packages"),
    ("tools", ["builtins:eval"], "tools[0]", "only the project's own packages"),
    ("system_prompt_file", "/etc/passwd", "system_prompt_file", "is outside the project"),
    ("model", {"provider": "scripted", "script": "../../../../etc/passwd"}, "model.script", "is outside the project"),
])
def test_specs_naming_code_or_files_outside_the_project_fail_validation(tmp_path: Path, field: str, value: object,
                                                                       where: str, problem: str) -> None:
    overrides: dict[str, object] = {field: value}
    if field == "system_prompt_file":
        overrides["system_prompt"] = None
    path = _spec(tmp_path, **overrides)
    with pytest.raises(SpecError) as caught:
        load_spec(path, project_dir=ROOT)
    [issue] = [i for i in caught.value.issues if i.field == where]
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(field + ":"))
    assert problem in issue.message and line <= issue.line <= line + 2


def test_a_spec_may_not_read_hidden_folders_of_the_project(tmp_path: Path) -> None:
    hidden = tmp_path / ".airlock"
    hidden.mkdir()
    (hidden / "ui-secret").write_text("secret")
    path = _spec(tmp_path, system_prompt=None, system_prompt_file=".airlock/ui-secret")
    with pytest.raises(SpecError, match="in a hidden folder"):
        load_spec(path, project_dir=tmp_path)


def test_definition_hash_follows_content_not_place(tmp_path: Path) -> None:
    one = load_spec(_spec(tmp_path / "a"), project_dir=ROOT)
    two = load_spec(_spec(tmp_path / "b"), project_dir=ROOT)
    assert one.definition_hash == two.definition_hash and one.definition_hash.startswith("sha256:")
    (tmp_path / "b" / "turns.yaml").write_text("turns:\n  - content: something else\n")
    assert load_spec(tmp_path / "b" / "w.yaml", project_dir=ROOT).definition_hash != one.definition_hash


def test_registry_resolves_by_name_file_version_and_pin(tmp_path: Path) -> None:
    _spec(tmp_path, name="pay-out", file="pay_out.yaml")
    v2 = _spec(tmp_path, name="pay-out", file="pay_out_v2.yaml", version=2)
    registry = DefinitionRegistry(tmp_path, ROOT)
    newest = registry.resolve("pay-out")
    assert newest.version == 2 and registry.resolve("pay_out_v2").version == 2
    assert registry.resolve("pay_out", version=1).version == 1
    assert registry.resolve("pay-out", pin=newest.definition_hash) == newest
    with pytest.raises(DefinitionError, match=r"no definition of pay-out v3; it has: pay-out v1 \(sha256:"):
        registry.resolve("pay-out", version=3)
    with pytest.raises(DefinitionError, match="nothing named 'ghost'"):
        registry.resolve("ghost")
    v2.write_text(v2.read_text().replace("system_prompt: hi", "system_prompt: changed"))
    changed = load_spec(v2, project_dir=ROOT)
    assert registry.resolve("pay-out", pin=changed.definition_hash).prompt_text == "changed"  # read again on a miss


def test_registry_refuses_an_ambiguous_newest_version(tmp_path: Path) -> None:
    _spec(tmp_path, name="twin", file="a.yaml")
    _spec(tmp_path, name="twin", file="b.yaml", system_prompt="other")
    with pytest.raises(DefinitionError, match="twin v1 has 2 different definitions"):
        DefinitionRegistry(tmp_path, ROOT).resolve("twin")


def test_the_registry_skips_specs_that_name_code_outside_the_project(tmp_path: Path) -> None:
    _spec(tmp_path, name="evil", input_guard={"redact": "os:system"})
    with pytest.raises(DefinitionError, match="nothing named 'evil'"):
        DefinitionRegistry(tmp_path, ROOT).resolve("evil")


async def _sneaky(state: AgentState) -> dict:
    return {}


def test_shipped_graphs_pass_the_check() -> None:
    check_graph(agent_graph(), "agent")
    check_graph(import_object("workflows.graphs.receipt:receipt_graph")(), "receipt")


def _model_graph() -> StateGraph:
    graph = StateGraph(AgentState)
    graph.add_node("call_model", call_model)
    graph.add_edge(START, "call_model")
    return graph


def test_a_graph_without_the_boundary_is_refused() -> None:
    graph = _model_graph()
    graph.add_node("pay", nodes.execute_tools)  # execution under another name, no checks before it
    graph.add_edge("call_model", "pay")
    graph.add_edge("pay", END)
    with pytest.raises(DefinitionError) as caught:
        check_graph(graph, "g")
    assert "node 'pay' reuses a boundary step" in str(caught.value)
    assert "the boundary is missing (await_approval, check_tool_calls, execute_tools)" in str(caught.value)


def test_a_graph_with_a_shortcut_into_execution_is_refused() -> None:
    graph = add_boundary(_model_graph())
    graph.add_node("sneak", _sneaky)
    graph.add_edge("sneak", "execute_tools")
    with pytest.raises(DefinitionError, match="edge sneak -> execute_tools skips the boundary's checks"):
        check_graph(graph, "g")


def test_a_boundary_node_replaced_by_another_function_is_refused() -> None:
    graph = _model_graph()
    graph.add_node("check_tool_calls", _sneaky)
    graph.add_node("await_approval", nodes.await_approval)
    graph.add_node("execute_tools", nodes.execute_tools)
    with pytest.raises(DefinitionError, match="node 'check_tool_calls' is not the boundary's own"):
        check_graph(graph, "g")


def test_the_worker_refuses_to_start_with_an_unguarded_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.runtime import worker

    _spec(tmp_path, name="custom", graph="workflows.graphs.receipt:receipt_graph")
    unguarded = _model_graph()
    unguarded.add_node("pay", nodes.execute_tools)
    monkeypatch.setattr(worker, "build_graph", lambda path: unguarded)
    with pytest.raises(DefinitionError, match=r"custom.yaml: graph workflows.graphs.receipt:receipt_graph: "):
        worker.graphs_for(DefinitionRegistry(tmp_path, ROOT))
