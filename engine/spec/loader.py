"""Loading a spec: an authored :class:`WorkflowSpec` from YAML or Python, resolved into a :class:`ResolvedSpec`.

A spec is a YAML file, or a Python module whose ``spec`` attribute is a
:class:`WorkflowSpec` (or a function returning one). Resolving reads what the
run needs to be self-contained: the system prompt text and its hash, every
tool's JSON schema, the output model's schema, and the definition's content
hash. The resolved spec travels inside the run, so a run keeps the definition
it started with even if the file changes meanwhile.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.errors import SpecError, SpecIssue
from engine.spec.models import STEP_CLASSES, ModelSpec, ResolvedSpec, ToolSpec, WorkflowSpec
from engine.spec.script import load_script
from engine.spec.source import Lines, file_problem, issues_of, line_for, read_text, read_yaml
from engine.toolkit import allow_project_roots, import_object, resolve_tool

_UNHASHED = {"source", "definition_hash"}  # where a definition was loaded from does not change what it is
# Fields added since definitions were first hashed: left out while unset, so a definition that does not use
# them keeps the hash it always had (a run started by an older CLI still finds its definition on a newer worker).
_HASHED_WHEN_SET = {"shadow_policy"}


def add_import_roots(*roots: Path) -> None:
    """Make tools and custom graphs importable from these folders (and only theirs: see toolkit)."""
    allow_project_roots(*roots)
    for root in roots:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))


def load_spec(path: str | Path, *, project_dir: Path | None = None) -> ResolvedSpec:
    """Load and resolve a spec from YAML or Python.

    Raises:
        SpecError: with one :class:`SpecIssue` per problem found.
    """
    path = Path(path).resolve()
    shown = str(path)
    if project_dir is not None:
        add_import_roots(project_dir)
    if not path.is_file():
        raise SpecError([SpecIssue(shown, 1, "(file)", "no such file")])
    if path.suffix == ".py":
        return _resolve(_load_python(path), path, {}, project_dir)
    data, lines = read_yaml(path, shown)
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(issues_of(exc, shown, lines)) from exc
    return _resolve(spec, path, lines, project_dir)


def definition_hash(spec: ResolvedSpec) -> str:
    """The content hash of a resolved definition: equal files anywhere give equal hashes."""
    return _hash(spec.model_dump(mode="json", exclude=_UNHASHED))


def _hash(body: dict[str, Any]) -> str:
    """The hash of a resolved definition's JSON (less ``_UNHASHED``); scripted-turn files count by their content."""
    for name in _HASHED_WHEN_SET:
        if body.get(name) is None:
            body.pop(name, None)
    for model in [body["model"], *body["routes"].values()]:
        if model.get("script"):
            script = Path(model["script"])
            model["script"] = hashlib.sha256(script.read_bytes()).hexdigest() if script.is_file() else None
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _load_python(path: Path) -> WorkflowSpec:
    name = f"airlock_spec_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except ValidationError as exc:  # ``WorkflowSpec(...)`` with a bad field
        raise SpecError(issues_of(exc, str(path), line=_module_line(exc, path))) from None
    except Exception as exc:  # noqa: BLE001 - a user module may raise anything at import
        raise SpecError([SpecIssue(str(path), _module_line(exc, path), "(module)",
                                   f"import failed: {type(exc).__name__}: {exc}")]) from None
    spec = getattr(module, "spec", None)
    try:
        spec = spec() if callable(spec) else spec
    except ValidationError as exc:  # ``WorkflowSpec(...)`` with a bad field, inside ``spec()``
        raise SpecError(issues_of(exc, str(path), line=_module_line(exc, path))) from None
    except Exception as exc:  # noqa: BLE001 - the project's function may raise anything
        raise SpecError([SpecIssue(str(path), _module_line(exc, path), "spec",
                                   f"spec() failed: {type(exc).__name__}: {exc}")]) from None
    if not isinstance(spec, WorkflowSpec):
        raise SpecError([SpecIssue(str(path), 1, "spec", "module must define `spec`, a WorkflowSpec")])
    # Again, from plain data: ``model_construct`` or a mutated object skips every bound. A resolved spec is
    # refused: what the loader fills in is not the author's to set.
    try:
        return WorkflowSpec.model_validate(spec.model_dump(exclude_unset=True))
    except ValidationError as exc:
        raise SpecError(issues_of(exc, str(path))) from None


def _module_line(exc: BaseException, path: Path) -> int:
    """The line of the spec module that raised ``exc`` (its innermost frame there), else 1."""
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename) == path and exc.lineno:
        return exc.lineno
    line = 1
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename) == path:
            line = lineno
    return line


def _function_problem(import_path: str, arity: int) -> str | None:
    """Why ``import_path`` is not a plain function taking ``arity`` positional arguments, or None."""
    module_name, _, attr = import_path.partition(":")
    try:
        found = import_object(import_path)
    except ValueError as exc:
        return str(exc)
    if not inspect.isfunction(found):
        missing = f"module {module_name!r} has no function {attr!r}"
        if found is None:
            return missing
        return f"{missing} ({attr} is {'a class' if inspect.isclass(found) else 'a ' + type(found).__name__})"
    try:
        inspect.signature(found).bind(*range(arity))
    except TypeError:
        return f"{import_path} must take {arity} argument(s)"
    return None


def _graph_problem(import_path: str) -> str | None:
    """Why a custom graph builder cannot be used (checked as the worker will: built, boundary in place), or None."""
    if (problem := _function_problem(import_path, 0)) is not None:
        return problem
    from engine.runtime.compiler import build_graph
    from engine.runtime.definitions import check_graph  # the worker's own check; it imports this module

    try:
        check_graph(build_graph(import_path), import_path)
    except Exception as exc:  # noqa: BLE001 - the project's builder may raise anything; report it, located
        return f"{type(exc).__name__}: {exc}"
    return None


def _resolve(spec: WorkflowSpec, path: Path, lines: Lines, project_dir: Path | None = None) -> ResolvedSpec:
    issues: list[SpecIssue] = []
    shown = str(path)
    prompt = spec.system_prompt or ""
    if spec.system_prompt_file:
        prompt_path = (path.parent / spec.system_prompt_file).resolve()
        if (problem := file_problem(prompt_path, path, project_dir)) is not None:
            issues.append(SpecIssue(shown, line_for(lines, ("system_prompt_file",)), "system_prompt_file", problem))
        elif not prompt_path.is_file():
            issues.append(SpecIssue(shown, line_for(lines, ("system_prompt_file",)), "system_prompt_file",
                                    f"prompt file {prompt_path} does not exist"))
        else:
            prompt = read_text(prompt_path, shown, "system_prompt_file", line_for(lines, ("system_prompt_file",)))
    model = _resolve_script(spec.model, ("model",), path, lines, issues, project_dir)
    routes = {name: _resolve_script(route, ("routes", name), path, lines, issues, project_dir)
              for name, route in spec.routes.items()}
    if not spec.graph:  # a custom graph may name its own step classes
        for name in spec.routes:
            if name not in STEP_CLASSES:
                issues.append(SpecIssue(shown, line_for(lines, ("routes", name)), f"routes.{name}",
                                        f"unknown step class; the agent graph has: {', '.join(STEP_CLASSES)}"))
    output_schema = _output_schema(spec.output_schema) if spec.output_schema else None
    if isinstance(output_schema, str):
        issues.append(SpecIssue(shown, line_for(lines, ("output_schema",)), "output_schema", output_schema))
    tool_specs: list[ToolSpec] = []
    for i, import_path in enumerate(spec.tools):
        try:
            td = resolve_tool(import_path)
        except ValueError as exc:
            issues.append(SpecIssue(shown, line_for(lines, ("tools", i)), f"tools[{i}]", str(exc)))
            continue
        tool_specs.append(ToolSpec(import_path=import_path, name=td.name, description=td.description,
                                   consequential=td.consequential, parameters=td.args_model.model_json_schema()))
    if spec.graph and (problem := _graph_problem(spec.graph)):
        issues.append(SpecIssue(shown, line_for(lines, ("graph",)), "graph", problem))
    if spec.input_guard and spec.input_guard.redact and (problem := _function_problem(spec.input_guard.redact, 1)):
        issues.append(SpecIssue(shown, line_for(lines, ("input_guard", "redact")), "input_guard.redact", problem))
    names = [t.name for t in tool_specs]
    for dup in sorted(n for n, count in Counter(names).items() if count > 1):
        issues.append(SpecIssue(shown, line_for(lines, ("tools",)), "tools", f"two tools are named {dup!r}"))
    if issues:
        raise SpecError(issues)
    hashed: dict[str, Any] = {"prompt": prompt, "tools": [t.model_dump() for t in tool_specs]}
    if output_schema is not None:
        hashed["output_schema"] = output_schema
    authored = {name: getattr(spec, name) for name in WorkflowSpec.model_fields}
    resolved = {**authored, "model": model, "routes": routes, "source": shown, "prompt_text": prompt,
                "prompt_hash": hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest(),
                "tool_specs": tool_specs, "output_json_schema": output_schema}
    unhashed = ResolvedSpec.model_construct(**resolved)  # only dumped, to hash what the definition will hold
    return ResolvedSpec(**resolved, definition_hash=definition_hash(unhashed))


def _resolve_script(model: ModelSpec, loc: tuple[str, ...], path: Path, lines: Lines,
                    issues: list[SpecIssue], project_dir: Path | None) -> ModelSpec:
    """The model with its scripted-turns file made absolute (relative paths are from the spec's folder)."""
    if not model.script:
        return model
    script_path = (path.parent / model.script).resolve()
    if (problem := file_problem(script_path, path, project_dir)) is not None:
        issues.append(SpecIssue(str(path), line_for(lines, (*loc, "script")), ".".join(loc) + ".script", problem))
    elif not script_path.is_file():
        issues.append(SpecIssue(str(path), line_for(lines, (*loc, "script")), ".".join(loc) + ".script",
                                f"script file {script_path} does not exist"))
    else:
        try:
            load_script(script_path)
        except SpecError as exc:  # located in the script file itself
            issues.extend(exc.issues)
    return model.model_copy(update={"script": str(script_path)})


def resolve_output_model(import_path: str) -> type[BaseModel]:
    """The pydantic model named ``module:Class``.

    Raises:
        ValueError: it cannot be imported or is not a pydantic model.
    """
    found = import_object(import_path)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise ValueError(f"{import_path} is not a pydantic model class")
    return found


def _output_schema(import_path: str) -> dict[str, Any] | str:
    """The JSON schema of the output model, or why it cannot be used."""
    try:
        return resolve_output_model(import_path).model_json_schema()
    except ValueError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a model pydantic cannot describe as JSON schema
        return f"{import_path} has no JSON schema: {type(exc).__name__}: {exc}"
