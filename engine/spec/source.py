"""Reading a spec file: bounded UTF-8 text, strict YAML, and problems located by line and field.

Everything here turns a file (or a pydantic error) into data or into
:class:`~engine.errors.SpecIssue` lines ``PATH:LINE: FIELD: message``; what
the data means is the models' and the loader's business.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from engine.boundary.inputs import text_depth
from engine.errors import SpecError, SpecIssue
from engine.spec.models import MAX_SPEC_BYTES

MAX_NESTING = 64  # brackets in a spec file (a spec is shallow; the YAML parser recurses on each level)

Lines = dict[tuple[Any, ...], int]  # a YAML path (keys and list indexes) -> its 1-based line
M = TypeVar("M", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """YAML for specs: no aliases (a few bytes of them expand to gigabytes) and no duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            # types-PyYAML leaves Parser.peek_event unannotated (it returns an Event); the stub is incomplete.
            event = self.peek_event()  # type: ignore[no-untyped-call]
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


def read_text(path: Path, shown: str, field: str = "(file)", line: int = 1, max_bytes: int = MAX_SPEC_BYTES) -> str:
    """A spec's (or its prompt's) text: UTF-8, at most ``max_bytes`` (a spec's: ``MAX_SPEC_BYTES``).

    Raises:
        SpecError: too large, or not UTF-8 (naming the byte).
    """
    data = path.read_bytes()
    if len(data) > max_bytes:
        raise SpecError([SpecIssue(shown, line, field, f"{path.name} is {len(data)} bytes; at most {max_bytes}")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([SpecIssue(shown, line, field, f"{path.name} is not UTF-8 text (byte {exc.start})")]) from None


def read_yaml(path: Path, shown: str, what: str = "a workflow spec",
              max_bytes: int = MAX_SPEC_BYTES) -> tuple[dict[str, Any], Lines]:
    """A YAML spec file's (or scripted-turns file's) mapping, and the line of each key and list item in it.

    Raises:
        SpecError: unreadable, nested too deep, not YAML, or not a mapping.
    """
    text = read_text(path, shown, max_bytes=max_bytes)
    if (depth := text_depth(text)) > MAX_NESTING:  # before parsing: the parser recurses, and slowly
        raise SpecError([SpecIssue(shown, 1, "(yaml)", f"nested {depth} levels deep; at most {MAX_NESTING}")])
    try:
        data = yaml.load(text, Loader=_StrictLoader)
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
        raise SpecError([SpecIssue(shown, 1, "(document)", f"{what} must be a mapping")])
    return data, lines


def read_model(path: Path, model: type[M], what: str,
               locate: Callable[[ValidationError, str, Lines, dict[str, Any]], list[SpecIssue]] | None = None,
               max_bytes: int = MAX_SPEC_BYTES) -> tuple[M, Lines]:
    """A YAML file read strictly (``read_yaml``) into ``model``, with the line index; ``what`` names the file's
    kind in messages, ``locate`` places validation problems (default: by their field's line).

    Raises:
        SpecError: missing, unreadable, not YAML, or not a valid ``model``; each problem located by line and field.
    """
    shown = str(path)
    if not path.is_file():
        raise SpecError([SpecIssue(shown, 1, "(file)", "no such file")])
    data, lines = read_yaml(path, shown, what, max_bytes)
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        issues = locate(exc, shown, lines, data) if locate else issues_of(exc, shown, lines)
        raise SpecError(issues) from None


def _line_index(text: str) -> Lines:
    """Map each YAML path (keys and list indexes) to its 1-based line."""
    lines: Lines = {}

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


def line_for(lines: Lines, loc: tuple[Any, ...]) -> int:
    """The line of ``loc``, or of the nearest enclosing key that has one (1 when none does)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def field_name(loc: tuple[Any, ...]) -> str:
    """``model.fallbacks[0].timeout_s`` for a pydantic error's location."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def issues_of(exc: ValidationError, shown: str, lines: Lines | None = None, line: int = 1) -> list[SpecIssue]:
    """One located issue per validation error (without a line index, a Python spec's: at ``line``)."""
    return [SpecIssue(shown, line_for(lines, tuple(e["loc"])) if lines else line, field_name(tuple(e["loc"])),
                      _message(e)) for e in exc.errors()]


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return str(error["msg"]).removeprefix("Value error, ")


def file_problem(target: Path, spec_path: Path, project_dir: Path | None) -> str | None:
    """Why a file a spec names may not be read (outside the project, or in a hidden folder), or None."""
    roots = [spec_path.parent.resolve(), *([project_dir.resolve()] if project_dir else [])]
    for root in roots:
        if target.is_relative_to(root):
            if any(part.startswith(".") for part in target.relative_to(root).parts):
                return f"{target} is in a hidden folder; a spec may not name it"
            return None
    return f"{target} is outside the project ({', '.join(map(str, roots))}); a spec may only name files in it"
