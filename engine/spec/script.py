"""Scripted turns: the file a ``provider: scripted`` model replays, and which turns a run gets.

A script holds ``turns:`` (every run replays them) and/or ``cases:``, each a
``match`` (a regular expression searched in the run's first user message,
which is ``input.message`` or else the run's input as JSON) and its own
``turns``. A run gets the first case that matches, else the top-level turns;
with neither, the scripted model answers 400 naming the message. So one spec
replays many recorded conversations::

    cases:
      - match: "A-1001"                 # the run whose message names order A-1001
        turns:
          - tool_calls: [{name: lookup_order, args: {order_id: A-1001}}]
          - content: "Refunded."
      - match: '"case": "late-chair"'   # or a case id put in the run's input
        turns: [...]
    turns:                              # optional: any other run
      - content: "Nothing to do."
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.spec.models import MAX_SPEC_BYTES
from engine.spec.source import read_model

#: A script holds recorded conversations (long answers on purpose, in tests of the model layer's limits).
MAX_SCRIPT_BYTES = 16 * 1024 * 1024


class ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str | None = None  # sent as is instead of ``args``: what a misbehaving model would send


class ScriptedTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str | None = None
    tool_calls: list[ScriptedCall] = Field(default_factory=list)
    expect_response_format: bool = False  # answer 400 unless the request asks for a JSON-schema answer


class ScriptCase(BaseModel):
    """The turns of the runs whose first user message ``match`` is found in."""

    model_config = ConfigDict(extra="forbid")
    # As long as a script file may be: ``airlock eval`` matches a whole run message, escaped (engine.evals.derive).
    match: str = Field(min_length=1, max_length=MAX_SPEC_BYTES, description="regular expression, searched (re.search)")
    turns: list[ScriptedTurn]

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turns: list[ScriptedTurn] | None = None
    cases: list[ScriptCase] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_turns(self) -> Script:
        if self.turns is None and not self.cases:
            raise ValueError("a script needs 'turns' or 'cases'")
        return self

    def turns_for(self, message: str) -> list[ScriptedTurn] | None:
        """The first matching case's turns, else the top-level turns (None: neither)."""
        for case in self.cases:
            if re.search(case.match, message):
                return case.turns
        return self.turns


class _NoAliases(yaml.SafeDumper):
    """Writes an object used twice out twice: script files may not hold YAML aliases (as spec files)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_script(script: dict[str, Any]) -> str:
    """A script's YAML text, as the loader reads it (no aliases, keys in their order)."""
    return yaml.dump(script, Dumper=_NoAliases, allow_unicode=True, sort_keys=False)


def load_script(path: Path) -> Script:
    """Read and validate a scripted-turns file.

    Raises:
        SpecError: unreadable, not YAML, or not a script; each problem located in the file by line and field.
    """
    return read_model(path, Script, "a script", max_bytes=MAX_SCRIPT_BYTES)[0]
