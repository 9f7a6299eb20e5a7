"""An eval dataset: cases (input, optional scripted turns, expectations) for one workflow, read strictly.

A dataset is a YAML file read like a spec (``engine.spec.source``): UTF-8, no
aliases or duplicate keys, unknown keys refused, and every problem reported
as ``FILE:LINE: field: message``. ``docs/evals.md`` describes the format.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.boundary.inputs import MAX_INPUT_BYTES, check_document
from engine.errors import InputError, SpecIssue
from engine.runtime.payloads import Outcome, PolicyOutcome
from engine.spec import ModelSpec
from engine.spec.script import ScriptedTurn
from engine.spec.source import issues_of, line_for, read_model

MAX_CASES = 1000
CASE_KEY = "eval_case"  # put in a scripted case's input when it has no message, so its turns find the run
_CASE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

#: An expected outcome or decision per tool: one value (every call of the tool came to it) or one per call, in order.
PerTool = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Expect(_Strict):
    """What a case's run must come to; every expectation given must hold for the case to pass."""

    status: Literal["completed", "limit_reached", "failed"] = "completed"
    output: dict[str, Any] = Field(default_factory=dict, description="fields of the structured output and "
                                                                     "their values (output_schema workflows)")
    output_contains: list[str] = Field(default_factory=list, max_length=100,
                                       description="texts the final answer must contain")
    tools_called: list[str] | None = Field(default=None, max_length=1000,
                                           description="the tools proposed, each as often as proposed")
    tools_order: Literal["any", "exact"] = "any"
    tools_not_called: list[str] = Field(default_factory=list, max_length=100)
    outcomes: dict[str, Outcome | list[Outcome]] = Field(default_factory=dict)
    decisions: dict[str, PolicyOutcome | list[PolicyOutcome]] = Field(default_factory=dict)
    max_cost: float | None = Field(default=None, ge=0, le=10**6)
    max_latency_ms: float | None = Field(default=None, gt=0, le=86_400_000)
    max_steps: int | None = Field(default=None, ge=0, le=1000)

    @field_validator("output_contains", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class EvalCase(_Strict):
    """One case: the run's input, how its approvals go, its scripted turns (if any), and what it must come to."""

    id: str = Field(pattern=_CASE_ID, description="letters, digits, '.', '_' and '-'; unique in the dataset")
    description: str = Field(default="", max_length=4000)
    input: dict[str, Any]
    approve: Literal["approve", "reject"] = Field(
        default="reject", description="how the eval's approver decides every approval the run opens")
    turns: list[ScriptedTurn] | None = Field(default=None, min_length=1, max_length=1000)
    expect: Expect = Expect()

    @field_validator("input")
    @classmethod
    def _input_fits(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            check_document(value, "input", MAX_INPUT_BYTES)
        except InputError as exc:
            raise ValueError(str(exc).removeprefix("input: ")) from None
        return value

    def message(self) -> str | None:
        """The input's ``message`` (the run's first user message), if it has one."""
        message = self.input.get("message")
        return message if isinstance(message, str) else None

    def run_input(self) -> dict[str, Any]:
        """The input the run starts with: a scripted case without a message carries its id (see ``match``)."""
        if self.turns is not None and self.message() is None:
            return {**self.input, CASE_KEY: self.id}
        return dict(self.input)

    def match(self, seen: Callable[[str], str] | None = None) -> str:
        """The regular expression a generated script finds this case's run by, in its first user message: the
        whole message when the input has one (as the model gets it: ``seen``, the workflow's redaction hook),
        else the case id the run input carries."""
        message = self.message()
        if message is not None:
            return rf"\A{re.escape(seen(message) if seen else message)}\Z"
        return re.escape(f'"{CASE_KEY}": "{self.id}"')


class Dataset(_Strict):
    """A dataset as written: the workflow it evaluates, an optional model override, its cases."""

    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    description: str = Field(default="", max_length=4000)
    workflow: str = Field(min_length=1, max_length=1000, description="a workflow's name or a spec file "
                                                                     "(relative to the dataset)")
    model: ModelSpec | None = None
    cases: list[EvalCase] = Field(min_length=1, max_length=MAX_CASES)

    @model_validator(mode="after")
    def _distinct(self) -> Dataset:
        seen: dict[str, str] = {}
        messages: dict[str, str] = {}
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"two cases have the id {case.id!r}")
            seen[case.id] = case.id
            message = case.message()
            if case.turns is not None and message is not None:
                if message in messages:  # their generated script could not tell the runs apart
                    raise ValueError(f"cases {messages[message]!r} and {case.id!r} have scripted turns and the "
                                     "same input message; give each a different message")
                messages[message] = case.id
        return self


class LoadedDataset(BaseModel):
    """A dataset with where it came from: its file, name and content hash."""

    model_config = ConfigDict(frozen=True)

    path: Path
    name: str
    sha256: str
    data: Dataset
    lines: dict[str, int] = Field(default_factory=dict)  # case id -> its line (for messages)

    @property
    def scripted(self) -> bool:
        """Whether any case brings its own scripted turns."""
        return any(c.turns is not None for c in self.data.cases)

    def workflow_path(self) -> Path | None:
        """The spec file ``workflow:`` names, relative to the dataset, if it names a file."""
        given = Path(self.data.workflow)
        candidate = given if given.is_absolute() else self.path.parent / given
        return candidate if candidate.suffix in (".yaml", ".yml", ".py") else None


def load_dataset(path: Path) -> LoadedDataset:
    """Read and check an eval dataset.

    Raises:
        SpecError: unreadable, not YAML, or not a dataset; each problem located by line and field.
    """
    dataset, lines = read_model(path, Dataset, "an eval dataset", _located)
    case_lines = {c.id: line_for(lines, ("cases", i)) for i, c in enumerate(dataset.cases)}
    return LoadedDataset(path=path, name=dataset.name or path.stem.replace("_", "-").lower(),
                         sha256=hashlib.sha256(path.read_bytes()).hexdigest(), data=dataset, lines=case_lines)


def _located(exc: ValidationError, shown: str, lines: dict[tuple[Any, ...], int],
             data: dict[str, Any]) -> list[SpecIssue]:
    """Issues by line; a dataset-wide problem (two cases alike) points at the second case it names."""
    cases = data.get("cases") if isinstance(data.get("cases"), list) else []
    located = []
    for issue in issues_of(exc, shown, lines):
        if issue.field == "(document)" and cases and (ids := re.findall(r"'([^']+)'", issue.message)):
            for i, case in enumerate(cases):
                if isinstance(case, dict) and case.get("id") == ids[-1]:
                    issue = SpecIssue(shown, line_for(lines, ("cases", i)), f"cases[{i}]", issue.message)
        located.append(issue)
    return located
