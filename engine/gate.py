"""Gates: the thresholds a change to ``policies/`` or a prompt must meet, read strictly, and the checks of them.

``airlock gate`` (``engine.cli.gate``) takes them from ``gate.yaml`` and its
flags, runs the shadow evaluation and the eval datasets, and hands the
figures to :func:`shadow_checks` and :func:`eval_checks`: pure functions, one
:class:`Check` per threshold set. ``docs/gates.md`` is the CI recipe.

The file is read like a spec (``engine.spec.source``): UTF-8, no aliases or
duplicate keys, unknown keys refused, each problem as ``FILE:LINE: field:
message``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from engine.boundary.shadow import ShadowError, parse_transitions
from engine.errors import InputError
from engine.evals.scoring import Summary
from engine.spec.source import read_model

MAX_EVALS = 50


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _a_transition(value: str) -> str:
    try:
        parse_transitions([value])
    except ShadowError:
        raise ValueError(f"{value!r} is not a transition: OLD->NEW with each one of allow, require_approval, "
                         "deny or *, or 'any'") from None
    return value


#: One ``--fail-on`` value (``deny->allow``, ``*->allow``, ``any``), checked where it is written.
Transition = Annotated[str, AfterValidator(_a_transition)]


class ShadowGate(_Strict):
    """Thresholds on what the candidate policies would change in recorded traffic."""

    policies: Path = Field(default=Path("policies"), description="the candidate policies folder")
    since: str = "7d"
    workflow: str | None = Field(default=None, min_length=1, max_length=200)
    fail_on: list[Transition] = Field(default_factory=list, max_length=50,
                               description="transitions that fail the gate at once (deny->allow, *->allow, any)")
    max_changed: int | None = Field(default=None, ge=0, description="decisions decided otherwise, at most")
    max_changed_share: float | None = Field(default=None, ge=0, le=1,
                                            description="share of re-decided decisions decided otherwise, at most")
    min_decisions: int = Field(default=1, ge=0, description="recorded decisions re-decided, at least (an empty "
                                                             "window proves nothing)")

    @field_validator("since")
    @classmethod
    def _a_window(cls, value: str) -> str:
        from engine.store.stats import window  # pure; the store's package is imported only here

        try:
            window(value, "since")
        except InputError as exc:
            raise ValueError(str(exc).removeprefix("since: ")) from None
        return value

    @property
    def forbidden(self) -> set[str]:
        return parse_transitions(self.fail_on)


class EvalGate(_Strict):
    """Thresholds on one eval dataset run against the changed version (and the base version, for drops)."""

    dataset: Path
    workflow: str | None = Field(default=None, min_length=1, max_length=1000,
                                 description="the changed version: a spec file or a name (default: the "
                                             "dataset's workflow)")
    base: Path | None = Field(default=None, description="the base branch's spec file (default: from --base-dir)")
    min_success_rate: float | None = Field(default=None, ge=0, le=1)
    max_drop: float | None = Field(default=None, ge=0, le=1, description="success rate lost against the base, "
                                                                          "at most (0.1: ten points)")
    max_newly_failing: int | None = Field(default=None, ge=0, description="cases that pass on the base and fail "
                                                                            "on the change, at most")

    @property
    def compares(self) -> bool:
        """Whether a threshold needs the base version run too."""
        return self.max_drop is not None or self.max_newly_failing is not None


class GateConfig(_Strict):
    """``gate.yaml``: a shadow section, eval sections, or both."""

    shadow: ShadowGate | None = None
    evals: list[EvalGate] = Field(default_factory=list, max_length=MAX_EVALS)


def load_gate(path: Path) -> GateConfig:
    """Read and check a gate file; relative paths in it are taken from the file's folder.

    Raises:
        SpecError: unreadable, not YAML, or not a gate file; each problem located by line and field.
    """
    config, _ = read_model(path, GateConfig, "a gate file")
    return relative_to(config, path.parent)


def relative_to(config: GateConfig, folder: Path) -> GateConfig:
    """``config`` with its relative paths taken from ``folder``."""
    def at(p: Path) -> Path:
        return p if p.is_absolute() else folder / p

    shadow = config.shadow.model_copy(update={"policies": at(config.shadow.policies)}) if config.shadow else None
    evals = [e.model_copy(update={"dataset": at(e.dataset), "base": at(e.base) if e.base else None,
                                  "workflow": str(at(Path(e.workflow))) if e.workflow and _is_file(e.workflow)
                                  else e.workflow}) for e in config.evals]
    return GateConfig(shadow=shadow, evals=evals)


def _is_file(version: str) -> bool:
    """Whether a version names a spec file (else a workflow's name), as ``airlock eval`` tells them apart."""
    return "/" in version or version.endswith((".yaml", ".yml", ".py"))


def base_version(head: Path, project_dir: Path, base_dir: Path) -> Path | None:
    """The base branch's file of a changed version: the file at the same place in the base checkout, or None
    when the version is not in the project folder."""
    try:
        return base_dir / head.resolve().relative_to(project_dir.resolve())
    except ValueError:
        return None


@dataclass(frozen=True)
class Check:
    """One threshold against what was measured; ``passed`` is None when it could not be checked (``value``
    says why)."""

    name: str
    threshold: str
    value: str
    passed: bool | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "threshold": self.threshold, "value": self.value, "passed": self.passed}


def failed(checks: list[Check]) -> list[Check]:
    """The checks that failed (those not checked do not fail the gate)."""
    return [c for c in checks if c.passed is False]


def shadow_checks(gate: ShadowGate, *, decided: int, transitions: Mapping[str, int]) -> list[Check]:
    """The shadow thresholds against the report's figures: decisions re-decided, changed ones by transition."""
    changed = sum(transitions.values())
    checks = [Check("shadow.min_decisions", f">= {gate.min_decisions}", f"{decided} re-decided",
                    decided >= gate.min_decisions)]
    if gate.fail_on:
        forbidden = {t: n for t, n in sorted(transitions.items()) if t in gate.forbidden and n}
        checks.append(Check("shadow.fail_on", ", ".join(gate.fail_on),
                            ", ".join(f"{t} ×{n}" for t, n in forbidden.items()) or "none", not forbidden))
    if gate.max_changed is not None:
        checks.append(Check("shadow.max_changed", f"<= {gate.max_changed}", f"{changed} changed",
                            changed <= gate.max_changed))
    if gate.max_changed_share is not None:
        share = changed / decided if decided else 0.0
        checks.append(Check("shadow.max_changed_share", f"<= {gate.max_changed_share:.2%}",
                            f"{share:.2%} ({changed}/{decided})", share <= gate.max_changed_share))
    return checks


def eval_checks(gate: EvalGate, label: str, head: Summary, *, base: Summary | None = None,
                newly_failing: list[str] | None = None, no_base: str | None = None) -> list[Check]:
    """One dataset's thresholds: the changed version's success rate, and against the base (when it ran) the
    drop in success rate and the cases newly failing. ``no_base`` says why the base did not run."""
    name = f"evals[{label}]"
    checks = []
    if gate.min_success_rate is not None:
        checks.append(Check(f"{name}.min_success_rate", f">= {gate.min_success_rate:.0%}",
                            f"{head.success_rate:.0%} ({head.passed}/{head.cases})",
                            head.success_rate >= gate.min_success_rate))
    if gate.max_drop is not None:
        if base is None:
            checks.append(Check(f"{name}.max_drop", f"<= {gate.max_drop * 100:g} points",
                                f"not checked: {no_base or 'no base version'}", None))
        else:
            drop = round(base.success_rate - head.success_rate, 4)
            checks.append(Check(f"{name}.max_drop", f"<= {gate.max_drop * 100:g} points",
                                f"{base.success_rate:.0%} -> {head.success_rate:.0%}, "
                                + (f"a drop of {drop * 100:g} points" if drop > 0 else "no drop"),
                                drop <= gate.max_drop + 1e-9))
    if gate.max_newly_failing is not None:
        if base is None or newly_failing is None:
            checks.append(Check(f"{name}.max_newly_failing", f"<= {gate.max_newly_failing}",
                                f"not checked: {no_base or 'no base version'}", None))
        else:
            shown = ", ".join(newly_failing[:10]) + (", …" if len(newly_failing) > 10 else "")
            checks.append(Check(f"{name}.max_newly_failing", f"<= {gate.max_newly_failing}",
                                f"{len(newly_failing)}" + (f" ({shown})" if newly_failing else ""),
                                len(newly_failing) <= gate.max_newly_failing))
    return checks
