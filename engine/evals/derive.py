"""The definition an eval runs: a workflow version as the dataset changes it, served by the worker.

A worker runs only definitions from its own workflows folder (README, "Trust
boundaries"); a run request never carries one. So an eval writes the version
it evaluates into that folder, under a derived name
(``<workflow>-eval-<hash>-<nonce>``), and starts its runs by that name, pinned to its
hash. The derived definition is the workflow's own, with its prompt inline,
the dataset's ``model`` (if any) in place of the workflow's, and, when cases
bring scripted turns, one generated script (``_<name>.turns.yaml``; a leading
``_`` keeps the worker from reading it as a workflow) whose cases find each
run by its message or case id. Runs of the derived name never mix with the
workflow's own in ``airlock stats``. The files are removed when the eval ends (an eval killed outright
leaves them: ``workflows/*-eval-*.yaml`` and their ``_*.turns.yaml`` may then be deleted).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.errors import SpecError, SpecIssue
from engine.evals.dataset import LoadedDataset
from engine.spec import ModelSpec, ResolvedSpec, WorkflowSpec, load_spec
from engine.spec.script import dump_script, load_script
from engine.toolkit import import_object


@dataclass(frozen=True)
class Derived:
    """A derived definition, the workflow version it came from, and the files that hold it."""

    spec: ResolvedSpec
    base: ResolvedSpec
    files: tuple[Path, ...]

    def remove(self) -> None:
        """Delete the derived files (the worker keeps what it loaded; runs carry their definition)."""
        for path in self.files:
            path.unlink(missing_ok=True)


def derive(dataset: LoadedDataset, base: ResolvedSpec, workflows_dir: Path, project_dir: Path) -> Derived:
    """Write the definition ``dataset`` runs ``base`` as into ``workflows_dir`` and load it as the worker will.

    Raises:
        SpecError: the dataset cannot run this workflow (scripted turns missing), or the derived
            definition does not load.
    """
    model = _model(dataset, base)
    script = _script(dataset, model, base)
    body = _body(base, model)
    digest = hashlib.sha256(json.dumps([body, script], sort_keys=True, default=str).encode()).hexdigest()[:10]
    # its own files for each eval: two evals of one version at once never write or remove each other's
    name = f"{base.name[:40]}-eval-{digest}-{secrets.token_hex(3)}"
    files: list[Path] = []
    if script is not None:
        script_path = workflows_dir / f"_{name}.turns.yaml"
        script_path.write_text(dump_script(script), encoding="utf-8")
        files.append(script_path)
        body["model"]["script"] = script_path.name
        for route in body["routes"].values():
            if route.get("provider") == "scripted":  # every scripted step replays the generated script
                route["script"] = script_path.name
    spec_path = workflows_dir / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump({"name": name, **body}, sort_keys=False, allow_unicode=True),
                         encoding="utf-8")
    files.append(spec_path)
    try:
        return Derived(load_spec(spec_path, project_dir=project_dir), base, tuple(files))
    except SpecError:
        Derived(base, base, tuple(files)).remove()
        raise


def _model(dataset: LoadedDataset, base: ResolvedSpec) -> ModelSpec:
    """The dataset's model, else the workflow's; with scripted turns, a scripted model at the same prices."""
    model = dataset.data.model or base.model
    if dataset.data.model is not None and model.script and not Path(model.script).is_absolute():
        model = model.model_copy(update={"script": str((dataset.path.parent / model.script).resolve())})
    if not dataset.scripted or model.provider == "scripted":
        return model
    if missing := [c for c in dataset.data.cases if c.turns is None]:
        case = missing[0]
        raise SpecError([SpecIssue(str(dataset.path), dataset.lines.get(case.id, 1), "cases",
                                   f"case {case.id!r} has no turns, but other cases do and the model "
                                   f"({model.provider} {model.name}) is not scripted: give every case turns, "
                                   "or none")])
    return ModelSpec(provider="scripted", name=model.name, script="(generated)", timeout_s=model.timeout_s,
                     price_in_per_1k=model.price_in_per_1k, price_out_per_1k=model.price_out_per_1k)


def _script(dataset: LoadedDataset, model: ModelSpec, base: ResolvedSpec) -> dict[str, Any] | None:
    """The generated script: the dataset's cases first, then what the model's own script replays. A case is
    found by its message as the model gets it: redacted by the workflow's input guard, when it has a hook.

    Raises:
        SpecError: two scripted cases whose messages the model would get alike.
    """
    if model.provider != "scripted":
        return None
    seen = _as_the_model_gets(base)
    cases: list[dict[str, Any]] = []
    matches: dict[str, str] = {}  # match -> the case it finds
    for case in dataset.data.cases:
        if case.turns is None:
            continue
        match = case.match(seen)
        if match in matches:
            raise SpecError([SpecIssue(str(dataset.path), dataset.lines.get(case.id, 1), "cases",
                                       f"cases {matches[match]!r} and {case.id!r} have scripted turns and messages "
                                       "the model gets alike (once redacted by the input guard); give each a "
                                       "different message")])
        matches[match] = case.id
        cases.append({"match": match, "turns": [t.model_dump(exclude_defaults=True) for t in case.turns]})
    script: dict[str, Any] = {"cases": cases}
    if model.script and model.script != "(generated)":
        own = load_script(Path(model.script))
        script["cases"] += [c.model_dump(exclude_defaults=True) for c in own.cases]
        if own.turns is not None:
            script["turns"] = [t.model_dump(exclude_defaults=True) for t in own.turns]
    if not script["cases"]:
        del script["cases"]
    return script


def _as_the_model_gets(base: ResolvedSpec) -> Callable[[str], str] | None:
    """The workflow's redaction hook, called as the ``guard_input`` activity calls it; None without one."""
    guard = base.input_guard
    if guard is None or not guard.redact:
        return None
    redact = import_object(guard.redact)
    return lambda message: str(redact(message))


def _body(base: ResolvedSpec, model: ModelSpec) -> dict[str, Any]:
    """The authored fields of the derived definition (all but its name), as YAML data."""
    authored = {name: getattr(base, name) for name in WorkflowSpec.model_fields if name != "name"}
    body: dict[str, Any] = WorkflowSpec.model_construct(**authored).model_dump(mode="json", exclude={"name"})
    body["system_prompt"], body["system_prompt_file"] = base.prompt_text, None
    body["approval"]["timeout"] = f"{int(base.approval.timeout.total_seconds())}s"
    body["model"] = model.model_dump(mode="json", exclude_none=True)
    if model is not base.model:  # the dataset's model (or the scripted one) answers every step
        body["routes"] = ({k: {**body["model"], **_prices(r)} for k, r in base.routes.items()}
                          if model.provider == "scripted" and model.script == "(generated)" else {})
    return {k: v for k, v in body.items() if v is not None}


def _prices(model: ModelSpec) -> dict[str, Any]:
    return {"name": model.name, "price_in_per_1k": model.price_in_per_1k, "price_out_per_1k": model.price_out_per_1k}
