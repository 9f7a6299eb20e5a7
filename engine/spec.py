"""Workflow specs: frozen pydantic models and a loader with line-numbered errors.

A spec is a YAML file, or a Python module whose ``spec`` attribute is a
:class:`WorkflowSpec` (or a function returning one). Loading resolves what the
run needs to be self-contained: the system prompt text and its hash, and every
tool's JSON schema. The resolved spec travels inside the run request, so a run
keeps the definition it started with even if the file changes meanwhile.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.boundary.inputs import text_depth
from engine.errors import SpecError, SpecIssue
from engine.redact import safe_url
from engine.toolkit import allow_project_roots, import_object, resolve_tool

_NAME = r"^[a-z][a-z0-9_-]*$"
_DURATION = re.compile(r"^\s*([0-9]{1,12})\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


MAX_SPEC_BYTES = 256 * 1024  # spec and prompt files: a run request stays far below Temporal's 4 MB messages
MAX_NESTING = 64  # brackets in a spec file (a spec is shallow; the YAML parser recurses on each level)
MAX_DURATION = timedelta(days=365)


def parse_duration(value: Any) -> Any:
    """Accept ``90s``, ``30m``, ``24h``, ``7d`` besides what pydantic takes.

    A duration too long for a ``timedelta`` is left as it is, so the caller's own check refuses it.
    """
    if isinstance(value, str) and (m := _DURATION.match(value)):
        try:
            return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
        except (OverflowError, ValueError):  # past timedelta's range, or more digits than int() reads
            return value
    return value


class _StrictLoader(yaml.SafeLoader):
    """YAML for specs: no aliases (a few bytes of them expand to gigabytes) and no duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed in a spec",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # a list or mapping as a key: never a spec field
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain name, not a list or "
                                                        "mapping", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EndpointSpec(_Frozen):
    """One model endpoint: where it is, what it is called there, and what it costs."""

    provider: Literal["openai", "scripted"] = "openai"
    name: str = Field(default="scripted", min_length=1, max_length=200)
    base_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://[^\s/?#]+[^\s]*$",
                                 description="http(s)://host[:port][/path] of an OpenAI-compatible API")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
                                    description="name of the environment variable holding the API key")
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    price_in_per_1k: float = Field(default=0.0, ge=0, le=1000, description="cost of 1000 input tokens")
    price_out_per_1k: float = Field(default=0.0, ge=0, le=1000, description="cost of 1000 output tokens")


def endpoint_label(endpoint: EndpointSpec, script: str | None) -> str:
    """How an endpoint is named in results, events, progress and errors (never with a key)."""
    if endpoint.provider == "scripted":
        return f"scripted model ({Path(script or '').name})"
    return f"{endpoint.name} @ {safe_url(endpoint.base_url) if endpoint.base_url else 'api.openai.com'}"


class ModelSpec(EndpointSpec):
    """Which model reasons for this workflow, and the endpoints that stand in when it fails.

    ``fallbacks`` are tried in order on timeouts, connection errors, 429 and
    5xx (and answers that are not a chat completion); never on a 4xx caused by
    our own request.
    """

    script: str | None = Field(default=None, max_length=1000)
    temperature: float = Field(default=0.0, ge=0, le=2)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    response_format: bool = Field(default=True, description="send the workflow's output_schema as a JSON-schema "
                                                            "response format (off for endpoints without it; the "
                                                            "answer is validated either way)")
    fallbacks: list[EndpointSpec] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _scripted_needs_script(self) -> "ModelSpec":
        if self.provider == "scripted" and not self.script:
            raise ValueError("provider 'scripted' needs 'script' (a YAML file of turns)")
        return self


class LimitsSpec(_Frozen):
    """Hard limits that end a run cleanly."""

    max_steps: int = Field(default=20, ge=1, le=1000)
    max_tool_calls: int = Field(default=20, ge=0, le=1000)
    max_repairs: int = Field(default=3, ge=0, le=100, description="invalid tool calls and final answers sent back "
                                                                  "to the model before the run fails")
    max_model_calls: int | None = Field(default=None, ge=1, le=10_000)
    max_tokens: int | None = Field(default=None, ge=1, le=10**9, description="input + output tokens over the run")
    max_cost: float | None = Field(default=None, gt=0, le=10**6,
                                   description="model cost over the run, in price units")
    daily_cost: float | None = Field(default=None, gt=0, le=10**7,
                                     description="model cost per tenant and workflow per UTC day, checked before "
                                                 "each call")


STEP_CLASSES = {
    "plan": "the first call, on the user's input",
    "tool_results": "a call that reads tool results (summarising them, or choosing the next action)",
    "repair": "a call answering a validation error (tool arguments or final answer)",
}


class ApprovalSpec(_Frozen):
    """How long a gated action waits, and who approves by default."""

    timeout: timedelta = timedelta(hours=24)
    approver_role: str | None = Field(default=None, min_length=1, max_length=64,
                                      description="who approves when the policy names no approvers; with neither, "
                                                  "the action is denied")

    _parse = field_validator("timeout", mode="before")(parse_duration)

    @field_validator("timeout")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= MAX_DURATION:
            raise ValueError(f"must be between 1s and {MAX_DURATION.days}d")
        return value


class InputGuardSpec(_Frozen):
    """Checks on the user's input before it reaches the model (run in an activity)."""

    max_chars: int | None = Field(default=None, ge=1, le=1_000_000)
    redact: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                               description="import path of a function str -> str (e.g. PII redaction)")


class ToolSpec(_Frozen):
    """A tool as resolved at load time."""

    import_path: str
    name: str
    description: str
    consequential: bool
    parameters: dict[str, Any]

    def function_schema(self) -> dict[str, Any]:
        """The tool as an OpenAI-compatible endpoint is told about it."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


class WorkflowSpec(_Frozen):
    """One agent workflow. Unknown keys are errors."""

    name: str = Field(pattern=_NAME, max_length=64)
    version: int = Field(ge=1, le=1_000_000)
    description: str = Field(default="", max_length=4000)
    model: ModelSpec
    system_prompt: str | None = Field(default=None, max_length=MAX_SPEC_BYTES)
    system_prompt_file: str | None = Field(default=None, max_length=1000)
    tools: list[str] = Field(default_factory=list, max_length=100)
    policy: str = Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
    limits: LimitsSpec = LimitsSpec()
    approval: ApprovalSpec = ApprovalSpec()
    graph: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    chain_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    input_guard: InputGuardSpec | None = None
    routes: dict[str, ModelSpec] = Field(
        default_factory=dict, max_length=len(STEP_CLASSES),
        description="step class -> the model for those steps (e.g. a cheaper one for tool_results); other steps "
                    "use 'model'")
    output_schema: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                                      description="import path of a pydantic model the final answer must match")

    # Filled by the loader.
    source: str | None = None
    prompt_text: str | None = None
    prompt_hash: str | None = None
    tool_specs: list[ToolSpec] = Field(default_factory=list)
    output_json_schema: dict[str, Any] | None = None
    definition_hash: str | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> "WorkflowSpec":
        if bool(self.system_prompt) == bool(self.system_prompt_file):
            raise ValueError("give exactly one of 'system_prompt' or 'system_prompt_file'")
        return self

    def model_for(self, step_class: str) -> ModelSpec:
        """The model that answers steps of this class: its route, else the workflow's model."""
        return self.routes.get(step_class, self.model)

    def tool(self, name: str) -> ToolSpec | None:
        """The tool the model called ``name``, if the workflow has it."""
        return next((t for t in self.tool_specs if t.name == name), None)


# --- locating errors ----------------------------------------------------------


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map each YAML path (keys and list indexes) to its 1-based line."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                p = path + (key.value,)
                lines[p] = key.start_mark.line + 1
                walk(value, p)
                lines[p] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    root = yaml.compose(text, Loader=_StrictLoader)
    if root is not None:
        walk(root, ())
    return lines


def _line_for(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _field_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


# --- loading ------------------------------------------------------------------


def add_import_roots(*roots: Path) -> None:
    """Make tools and custom graphs importable from these folders (and only theirs: see toolkit)."""
    allow_project_roots(*roots)
    for root in roots:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))


def _file_problem(target: Path, spec_path: Path, project_dir: Path | None) -> str | None:
    """Why a file a spec names may not be read (outside the project, or in a hidden folder), or None."""
    roots = [spec_path.parent.resolve(), *([project_dir.resolve()] if project_dir else [])]
    for root in roots:
        if target.is_relative_to(root):
            if any(part.startswith(".") for part in target.relative_to(root).parts):
                return f"{target} is in a hidden folder; a spec may not name it"
            return None
    return f"{target} is outside the project ({', '.join(map(str, roots))}); a spec may only name files in it"


def shown_spec(spec: WorkflowSpec) -> WorkflowSpec:
    """The definition as a run's workflow (and so Temporal's history) holds it: endpoint URLs without keys.

    Only the worker calls a model, with its own copy of the definition; the hash still names the real one.
    """
    def endpoint(e: Any) -> Any:
        return e.model_copy(update={"base_url": safe_url(e.base_url)}) if e.base_url else e

    def model(m: ModelSpec) -> ModelSpec:
        return endpoint(m).model_copy(update={"fallbacks": [endpoint(f) for f in m.fallbacks]})

    return spec.model_copy(update={"model": model(spec.model),
                                   "routes": {k: model(v) for k, v in spec.routes.items()}})


def definition_hash(spec: WorkflowSpec) -> str:
    """A content hash of a resolved definition: equal files anywhere give equal hashes.

    Scripted-turn files count by their content, not their path.
    """
    body = spec.model_dump(mode="json", exclude={"source", "definition_hash"})
    for model in [body["model"], *body["routes"].values()]:
        if model.get("script"):
            script = Path(model["script"])
            model["script"] = hashlib.sha256(script.read_bytes()).hexdigest() if script.is_file() else None
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def load_spec(path: str | Path, *, project_dir: Path | None = None) -> WorkflowSpec:
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
    text = _read_text(path, shown)
    if (depth := text_depth(text)) > MAX_NESTING:  # before parsing: the parser recurses, and slowly
        raise SpecError([SpecIssue(shown, 1, "(yaml)", f"nested {depth} levels deep; at most {MAX_NESTING}")])
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader without aliases
        lines = _line_index(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise SpecError([SpecIssue(shown, line, "(yaml)", str(getattr(exc, "problem", exc)))]) from exc
    except RecursionError:
        raise SpecError([SpecIssue(shown, 1, "(yaml)", "nested too deep")]) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python reads
        raise SpecError([SpecIssue(shown, 1, "(yaml)", f"unreadable value: {exc}")]) from None
    if not isinstance(data, dict):
        raise SpecError([SpecIssue(shown, 1, "(document)", "a workflow spec must be a mapping")])
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        issues = [
            SpecIssue(shown, _line_for(lines, tuple(e["loc"])), _field_name(tuple(e["loc"])), _message(e))
            for e in exc.errors()
        ]
        raise SpecError(issues) from exc
    return _resolve(spec, path, lines, project_dir)


def _read_text(path: Path, shown: str, field: str = "(file)", line: int = 1) -> str:
    """A spec's (or its prompt's) text: UTF-8, at most ``MAX_SPEC_BYTES``.

    Raises:
        SpecError: too large, or not UTF-8 (naming the byte).
    """
    data = path.read_bytes()
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([SpecIssue(shown, line, field, f"{path.name} is {len(data)} bytes; at most {MAX_SPEC_BYTES}")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([SpecIssue(shown, line, field, f"{path.name} is not UTF-8 text (byte {exc.start})")]) from None


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return str(error["msg"]).removeprefix("Value error, ")


def _load_python(path: Path) -> WorkflowSpec:
    name = f"airlock_spec_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except ValidationError as exc:  # ``WorkflowSpec(...)`` with a bad field
        raise SpecError([SpecIssue(str(path), 1, _field_name(tuple(e["loc"])), _message(e))
                         for e in exc.errors()]) from None
    except Exception as exc:  # noqa: BLE001 - a user module may raise anything at import
        raise SpecError([SpecIssue(str(path), 1, "(module)", f"import failed: {type(exc).__name__}: {exc}")]) \
            from None
    spec = getattr(module, "spec", None)
    try:
        spec = spec() if callable(spec) else spec
    except Exception as exc:  # noqa: BLE001 - the project's function may raise anything
        raise SpecError([SpecIssue(str(path), 1, "spec", f"spec() failed: {type(exc).__name__}: {exc}")]) from None
    if not isinstance(spec, WorkflowSpec):
        raise SpecError([SpecIssue(str(path), 1, "spec", "module must define `spec`, a WorkflowSpec")])
    try:  # again, from plain data: ``model_construct`` or a mutated object skips every bound
        return WorkflowSpec.model_validate(spec.model_dump(exclude_unset=True))
    except ValidationError as exc:
        raise SpecError([SpecIssue(str(path), 1, _field_name(tuple(e["loc"])), _message(e))
                         for e in exc.errors()]) from None


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


def _resolve(spec: WorkflowSpec, path: Path, lines: dict[tuple[Any, ...], int],
             project_dir: Path | None = None) -> WorkflowSpec:
    issues: list[SpecIssue] = []
    shown = str(path)
    prompt = spec.system_prompt
    if spec.system_prompt_file:
        prompt_path = (path.parent / spec.system_prompt_file).resolve()
        if (problem := _file_problem(prompt_path, path, project_dir)) is not None:
            issues.append(SpecIssue(shown, _line_for(lines, ("system_prompt_file",)), "system_prompt_file", problem))
        elif not prompt_path.is_file():
            issues.append(SpecIssue(shown, _line_for(lines, ("system_prompt_file",)), "system_prompt_file",
                                    f"prompt file {prompt_path} does not exist"))
        else:
            prompt = _read_text(prompt_path, shown, "system_prompt_file", _line_for(lines, ("system_prompt_file",)))
    model = _resolve_script(spec.model, ("model",), path, lines, issues, project_dir)
    routes = {name: _resolve_script(route, ("routes", name), path, lines, issues, project_dir)
              for name, route in spec.routes.items()}
    if not spec.graph:  # a custom graph may name its own step classes
        for name in spec.routes:
            if name not in STEP_CLASSES:
                issues.append(SpecIssue(shown, _line_for(lines, ("routes", name)), f"routes.{name}",
                                        f"unknown step class; the agent graph has: {', '.join(STEP_CLASSES)}"))
    output_schema = _output_schema(spec.output_schema) if spec.output_schema else None
    if isinstance(output_schema, str):
        issues.append(SpecIssue(shown, _line_for(lines, ("output_schema",)), "output_schema", output_schema))
    tool_specs: list[ToolSpec] = []
    for i, import_path in enumerate(spec.tools):
        try:
            td = resolve_tool(import_path)
        except ValueError as exc:
            issues.append(SpecIssue(shown, _line_for(lines, ("tools", i)), f"tools[{i}]", str(exc)))
            continue
        tool_specs.append(ToolSpec(import_path=import_path, name=td.name, description=td.description,
                                   consequential=td.consequential, parameters=td.args_model.model_json_schema()))
    if spec.graph and (problem := _graph_problem(spec.graph)):
        issues.append(SpecIssue(shown, _line_for(lines, ("graph",)), "graph", problem))
    if spec.input_guard and spec.input_guard.redact and (problem := _function_problem(spec.input_guard.redact, 1)):
        issues.append(SpecIssue(shown, _line_for(lines, ("input_guard", "redact")), "input_guard.redact", problem))
    names = [t.name for t in tool_specs]
    for dup in sorted(n for n, count in Counter(names).items() if count > 1):
        issues.append(SpecIssue(shown, _line_for(lines, ("tools",)), "tools", f"two tools are named {dup!r}"))
    if issues:
        raise SpecError(issues)
    hashed: dict[str, Any] = {"prompt": prompt, "tools": [t.model_dump() for t in tool_specs]}
    if output_schema is not None:
        hashed["output_schema"] = output_schema
    prompt_hash = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()
    resolved = spec.model_copy(update={
        "source": shown,
        "prompt_text": prompt,
        "prompt_hash": prompt_hash,
        "tool_specs": tool_specs,
        "model": model,
        "routes": routes,
        "output_json_schema": output_schema,
    })
    return resolved.model_copy(update={"definition_hash": definition_hash(resolved)})


def _resolve_script(model: ModelSpec, loc: tuple[str, ...], path: Path, lines: dict[tuple[Any, ...], int],
                    issues: list[SpecIssue], project_dir: Path | None) -> ModelSpec:
    """The model with its scripted-turns file made absolute (relative paths are from the spec's folder)."""
    if not model.script:
        return model
    script_path = (path.parent / model.script).resolve()
    if (problem := _file_problem(script_path, path, project_dir)) is not None:
        issues.append(SpecIssue(str(path), _line_for(lines, (*loc, "script")), ".".join(loc) + ".script", problem))
    elif not script_path.is_file():
        issues.append(SpecIssue(str(path), _line_for(lines, (*loc, "script")), ".".join(loc) + ".script",
                                f"script file {script_path} does not exist"))
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
