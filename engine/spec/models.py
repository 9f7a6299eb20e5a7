"""The spec models: what an author writes (:class:`WorkflowSpec`), what the loader makes of it (:class:`ResolvedSpec`).

Every model is frozen and refuses unknown keys. An authored spec names its
prompt, tools and output model; the resolved one adds what a run needs to be
self-contained (the prompt text and its hash, each tool's JSON schema, the
output model's schema, the content hash), and is what travels inside a run.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.redact import safe_url

_NAME = r"^[a-z][a-z0-9_-]*$"
_IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
_PACKAGE = r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$"  # a Rego package, as OPA names it in its data path
_DURATION = re.compile(r"^\s*([0-9]{1,12})\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

MAX_SPEC_BYTES = 256 * 1024  # spec and prompt files: a run request stays far below Temporal's 4 MB messages
MAX_DURATION = timedelta(days=365)

STEP_CLASSES = {
    "plan": "the first call, on the user's input",
    "tool_results": "a call that reads tool results (summarising them, or choosing the next action)",
    "repair": "a call answering a validation error (tool arguments or final answer)",
}


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
    def _scripted_needs_script(self) -> ModelSpec:
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
    redact: str | None = Field(default=None, pattern=_IMPORT_PATH,
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
    """One agent workflow as its author writes it (YAML, or ``spec = WorkflowSpec(...)``). Unknown keys are errors."""

    name: str = Field(pattern=_NAME, max_length=64)
    version: int = Field(ge=1, le=1_000_000)
    description: str = Field(default="", max_length=4000)
    model: ModelSpec
    system_prompt: str | None = Field(default=None, max_length=MAX_SPEC_BYTES)
    system_prompt_file: str | None = Field(default=None, max_length=1000)
    tools: list[str] = Field(default_factory=list, max_length=100)
    policy: str = Field(pattern=_PACKAGE)
    shadow_policy: str | None = Field(default=None, pattern=_PACKAGE,
                                      description="another Rego package that decides every call too: its decision "
                                                  "is recorded beside the policy's and never obeyed")
    limits: LimitsSpec = LimitsSpec()
    approval: ApprovalSpec = ApprovalSpec()
    graph: str | None = Field(default=None, pattern=_IMPORT_PATH)
    chain_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    input_guard: InputGuardSpec | None = None
    routes: dict[str, ModelSpec] = Field(
        default_factory=dict, max_length=len(STEP_CLASSES),
        description="step class -> the model for those steps (e.g. a cheaper one for tool_results); other steps "
                    "use 'model'")
    output_schema: str | None = Field(default=None, pattern=_IMPORT_PATH,
                                      description="import path of a pydantic model the final answer must match")

    @model_validator(mode="after")
    def _one_prompt(self) -> WorkflowSpec:
        if bool(self.system_prompt) == bool(self.system_prompt_file):
            raise ValueError("give exactly one of 'system_prompt' or 'system_prompt_file'")
        return self

    @model_validator(mode="after")
    def _shadow_is_another_policy(self) -> WorkflowSpec:
        if self.shadow_policy is not None and self.shadow_policy == self.policy:
            raise ValueError(f"shadow_policy is the policy itself ({self.policy}); name the candidate package")
        return self

    def model_for(self, step_class: str) -> ModelSpec:
        """The model that answers steps of this class: its route, else the workflow's model."""
        return self.routes.get(step_class, self.model)


class ResolvedSpec(WorkflowSpec):
    """A workflow as the loader resolved it (``load_spec``): self-contained, the definition a run carries.

    Script paths are absolute, and the fields below are filled from the files
    and imports the authored spec names; an author may not set them. Its JSON is
    what a run's history and the definitions table hold, and (less ``source``)
    what ``definition_hash`` hashes: a field added later needs a default, or
    recorded runs no longer validate.
    """

    source: str = Field(description="the file the definition was loaded from")
    prompt_text: str = Field(description="the system prompt (inline, or the prompt file's text)")
    prompt_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the prompt, tool schemas and "
                                                                     "output schema: what the model is told")
    tool_specs: list[ToolSpec] = Field(description="each of ``tools`` as resolved, in order")
    output_json_schema: dict[str, Any] | None = Field(description="the JSON schema of ``output_schema``, if any")
    definition_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="the content hash of the "
                                                                               "definition (definition_hash)")

    def tool(self, name: str) -> ToolSpec | None:
        """The tool the model called ``name``, if the workflow has it."""
        return next((t for t in self.tool_specs if t.name == name), None)


S = TypeVar("S", bound=WorkflowSpec)
E = TypeVar("E", bound=EndpointSpec)


def shown_spec(spec: S) -> S:
    """The definition as a run's workflow (and so Temporal's history) holds it: endpoint URLs without keys.

    Only the worker calls a model, with its own copy of the definition; the hash still names the real one.
    """
    def endpoint(e: E) -> E:
        return e.model_copy(update={"base_url": safe_url(e.base_url)}) if e.base_url else e

    def model(m: ModelSpec) -> ModelSpec:
        return endpoint(m).model_copy(update={"fallbacks": [endpoint(f) for f in m.fallbacks]})

    return spec.model_copy(update={"model": model(spec.model),
                                   "routes": {k: model(v) for k, v in spec.routes.items()}})


def endpoint_label(endpoint: EndpointSpec, script: str | None) -> str:
    """How an endpoint is named wherever it is recorded or shown: results, events, progress, errors.

    Never with a key (like :func:`shown_spec`).
    """
    if endpoint.provider == "scripted":
        return f"scripted model ({Path(script or '').name})"
    return f"{endpoint.name} @ {safe_url(endpoint.base_url) if endpoint.base_url else 'api.openai.com'}"
