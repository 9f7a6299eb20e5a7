"""The workflow definitions a worker serves: the worker is their only authority.

A run request names a workflow (by its spec name or file name) and may pin a
version or a definition hash; the worker resolves it from the specs it loaded
itself from its workflows folder. A request never carries a spec, tools,
graph or prompt. A folder that changed is read again when a request names
something not yet loaded; a custom graph must have been registered when the
worker started, and it must route every tool call through the boundary.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph

from engine.errors import DefinitionError, SpecError
from engine.runtime import nodes
from engine.spec import ResolvedSpec, load_spec

logger = logging.getLogger(__name__)

_BOUNDARY = {"check_tool_calls": nodes.check_tool_calls, "await_approval": nodes.await_approval,
             "execute_tools": nodes.execute_tools}


SPEC_SUFFIXES = (".yaml", ".yml", ".py")


def spec_files(workflows_dir: Path) -> list[Path]:
    """Workflow definitions in a folder (YAML and Python)."""
    if not workflows_dir.is_dir():
        return []
    return sorted(p for p in workflows_dir.iterdir() if p.suffix in SPEC_SUFFIXES and not p.name.startswith("_"))


def loadable_specs(workflows_dir: Path, project_dir: Path) -> Iterator[tuple[Path, ResolvedSpec]]:
    """Each definition of a folder that loads, with its file; a broken file is skipped (`airlock validate`
    details it)."""
    for path in spec_files(workflows_dir):
        try:
            spec = load_spec(path, project_dir=project_dir)
        except Exception:  # noqa: BLE001 - one broken file must not hide the good ones
            continue
        yield path, spec


def spec_file(workflows_dir: Path, name: str) -> Path | None:
    """The definition file a bare workflow name means (``support_refund`` → ``support_refund.yaml``), or None."""
    return next((p for p in (workflows_dir / f"{name}{ext}" for ext in SPEC_SUFFIXES) if p.is_file()), None)


class DefinitionRegistry:
    """Specs loaded from the worker's own workflows folder, by name, version and hash."""

    def __init__(self, workflows_dir: Path, project_dir: Path) -> None:
        self._dir, self._project = workflows_dir, project_dir
        self._specs: dict[str, tuple[Path, ResolvedSpec]] = {}  # definition hash -> (file, spec)
        self._lock = threading.Lock()
        self.graphs: set[str] | None = None  # custom graphs a worker registered at start (None: not a worker)
        self.reload()

    def reload(self) -> None:
        """Read the workflows folder again; a bad file is skipped (``airlock validate`` details it)."""
        found: dict[str, tuple[Path, ResolvedSpec]] = {}
        for path in spec_files(self._dir):
            try:
                spec = load_spec(path, project_dir=self._project)
            except SpecError as exc:
                logger.warning("skipping workflow %s: %s", path, str(exc).splitlines()[0])
                continue
            except Exception as exc:  # noqa: BLE001 - one broken file must not hide the good ones
                logger.warning("skipping workflow %s: %s: %s", path, type(exc).__name__, exc)
                continue
            found[spec.definition_hash or ""] = (path, spec)
        with self._lock:
            self._specs.update(found)

    def specs(self) -> list[ResolvedSpec]:
        with self._lock:
            return [spec for _, spec in self._specs.values()]

    def _matching(self, workflow: str, version: int | None, pin: str | None) -> list[ResolvedSpec]:
        with self._lock:
            entries = list(self._specs.values())
        named = [s for p, s in entries if workflow in (s.name, p.stem, p.name)]
        return [s for s in named if version in (None, s.version) and pin in (None, s.definition_hash)]

    def resolve(self, workflow: str, *, version: int | None = None, pin: str | None = None) -> ResolvedSpec:
        """The definition a run request names: the newest version unless one is pinned.

        Raises:
            DefinitionError: nothing matches, the newest version is ambiguous, or its custom graph
                was not registered when the worker started.
        """
        found = self._matching(workflow, version, pin)
        if not found:
            self.reload()
            found = self._matching(workflow, version, pin)
        if not found:
            have = sorted({f"{s.name} v{s.version} ({s.definition_hash})"
                           for s in self._matching(workflow, None, None)})
            wanted = workflow + (f" v{version}" if version else "") + (f" pinned to {pin}" if pin else "")
            raise DefinitionError(f"this worker has no definition of {wanted}; "
                                  + (f"it has: {', '.join(have)}" if have else f"nothing named {workflow!r} in "
                                                                              f"{self._dir}"))
        newest = max(s.version for s in found)
        found = [s for s in found if s.version == newest]
        if len({s.definition_hash for s in found}) > 1:
            raise DefinitionError(f"{workflow} v{newest} has {len(found)} different definitions in {self._dir}; "
                                  "pin one by its definition hash")
        spec = found[0]
        if spec.graph and self.graphs is not None and f"custom:{spec.graph}" not in self.graphs:
            raise DefinitionError(f"{workflow} v{newest} uses the custom graph {spec.graph}, which was not "
                                  "registered when this worker started; restart the worker")
        return spec


def check_graph(graph: StateGraph[Any, Any, Any, Any], where: str) -> None:
    """Refuse a custom graph that could reach a tool without the boundary.

    The boundary's nodes must be there, be ours, and be the only way into
    execution: no other node may reuse them, and only the boundary may lead
    to ``await_approval`` or ``execute_tools``.

    Raises:
        DefinitionError: naming the graph and what is wrong.
    """
    problems = []
    for name, node in graph.nodes.items():
        fn = getattr(node.runnable, "afunc", None) or getattr(node.runnable, "func", None)
        if name in _BOUNDARY and fn is not _BOUNDARY[name]:
            problems.append(f"node {name!r} is not the boundary's own (use engine.runtime.compiler.add_boundary)")
        elif name not in _BOUNDARY and fn in _BOUNDARY.values():
            problems.append(f"node {name!r} reuses a boundary step outside the boundary")
    missing = sorted(set(_BOUNDARY) - set(graph.nodes))
    if missing:
        problems.append(f"the boundary is missing ({', '.join(missing)}): build it with engine.graph.add_boundary")
    for start, end in graph.edges:
        if end in ("await_approval", "execute_tools") and start not in _BOUNDARY:
            problems.append(f"edge {start} -> {end} skips the boundary's checks")
    for start, branches in graph.branches.items():
        for branch in branches.values():
            for end in (branch.ends or {}).values():
                if end in ("await_approval", "execute_tools") and start not in _BOUNDARY:
                    problems.append(f"conditional edge {start} -> {end} skips the boundary's checks")
    if problems:
        raise DefinitionError(f"{where}: " + "; ".join(problems))
