"""Shadow evaluation: what a candidate policy would have decided on recorded inputs, and what changes.

The candidate is the policies folder as a bundle would hold it (``bundle.stage``:
no tests, the same data documents), evaluated by ``opa eval`` on that bundle, a
chunk of inputs per process: for each input, ``data.<package>.<rule> with
input as`` it (``rule``: ``AIRLOCK_OPA__RULE``, ``decision`` unless set) — the
query the boundary's OPA answers, on the same engine. Package and rule are
checked to be names before they are put in the query. What
OPA gives back is read as the boundary reads it (``normalize_decision``: an
undefined or malformed decision is a denial, "policy unavailable"), with the
workflow's ``approval.approver_role`` filled in where the policy names nobody
(``with_approvers``), so "would have allowed" means what the boundary would have
done.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.boundary import bundle
from engine.boundary.decision import normalize_decision, with_approvers
from engine.errors import AirlockError
from engine.runtime.payloads import PolicyDecision

OUTCOMES = ("allow", "require_approval", "deny")
PACKAGE = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*")  # as a workflow spec's ``policy`` (fullmatch)
RULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a Rego rule name (fullmatch)
_CHUNK = 2000  # inputs per ``opa eval``
_EVAL_TIMEOUT_S = 600


def _runtime_error(output: str) -> bool:
    """Whether ``opa eval --format json`` failed evaluating (a conflict, a type or builtin error on some input),
    rather than for a reason of its own (then no input is to blame)."""
    try:
        errors = json.loads(output or "{}").get("errors") or []
    except (ValueError, AttributeError):
        return False
    return bool(errors) and all(str(e.get("code", "")).startswith("eval_") for e in errors if isinstance(e, dict))


class ShadowError(AirlockError):
    """The candidate policy cannot be evaluated (does not compile, no OPA, a malformed transition)."""

    exit_code = 2


def transition(old: str, new: str) -> str:
    """``allow->deny``: how a decision's outcome changed."""
    return f"{old}->{new}"


def parse_transitions(values: Iterable[str]) -> set[str]:
    """The transitions ``--fail-on`` names (``deny->allow``, ``*->allow``, ``any``), expanded.

    Raises:
        ShadowError: naming the value that is not a transition between outcomes.
    """
    wanted: set[str] = set()
    every = {transition(a, b) for a in OUTCOMES for b in OUTCOMES if a != b}
    for value in values:
        if value == "any":
            wanted |= every
            continue
        old, sep, new = value.partition("->")
        olds = OUTCOMES if old == "*" else (old,)
        news = OUTCOMES if new == "*" else (new,)
        if not sep or any(o not in OUTCOMES for o in olds) or any(n not in OUTCOMES for n in news):
            raise ShadowError(f"--fail-on {value!r}: expected OLD->NEW with each one of {', '.join(OUTCOMES)} "
                              "or *, or 'any'")
        wanted |= {transition(o, n) for o in olds for n in news if o != n}
    return wanted


class Item(BaseModel):
    """One recorded decision to re-decide."""

    decision_id: str
    run_id: str
    workflow: str | None
    tenant: str | None = None
    tool: str
    package: str
    outcome: str
    reasons: list[str]
    input: dict[str, Any]
    approver_role: str | None = None


class Change(BaseModel):
    """A recorded decision the candidate decides otherwise."""

    decision_id: str
    run_id: str
    workflow: str | None
    tenant: str | None = None
    tool: str
    args: dict[str, Any]
    old: str
    new: str
    old_reasons: list[str]
    new_reasons: list[str]

    @property
    def transition(self) -> str:
        return transition(self.old, self.new)


@dataclass
class Report:
    """What the candidate would have changed, over every recorded decision read."""

    revision: str
    decided: int = 0
    same: int = 0
    reasons_changed: int = 0  # same outcome, other reasons
    failed: int = 0  # inputs the candidate fails on at run time (a conflict…): denied, as the boundary would
    transitions: Counter[str] = field(default_factory=Counter)
    changes: list[Change] = field(default_factory=list)
    workflows: Counter[str] = field(default_factory=Counter)

    def add(self, item: Item, new: PolicyDecision) -> None:
        self.decided += 1
        self.workflows[item.workflow or "?"] += 1
        if new.outcome == item.outcome:
            self.same += 1
            self.reasons_changed += sorted(new.reasons) != sorted(item.reasons)
            return
        change = Change(decision_id=item.decision_id, run_id=item.run_id, workflow=item.workflow,
                        tenant=item.tenant, tool=item.tool,
                        args=(item.input.get("tool") or {}).get("args") or {}, old=item.outcome, new=new.outcome,
                        old_reasons=item.reasons, new_reasons=new.reasons)
        self.transitions[change.transition] += 1
        self.changes.append(change)

    def failing(self, forbidden: set[str]) -> dict[str, int]:
        """The forbidden transitions that appeared, with their counts."""
        return {t: n for t, n in sorted(self.transitions.items()) if t in forbidden}

    def as_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "decided": self.decided, "same": self.same,
                "reasons_changed": self.reasons_changed, "failed": self.failed,
                "transitions": dict(sorted(self.transitions.items())),
                "workflows": dict(sorted(self.workflows.items())),
                "changes": [c.model_dump() | {"transition": c.transition} for c in self.changes]}


class Candidate:
    """A policies folder, staged as a bundle, that ``opa eval`` decides recorded inputs with."""

    def __init__(self, opa: str, policies_dir: Path, rule: str = "decision") -> None:
        if not RULE.fullmatch(rule):
            raise ShadowError(f"AIRLOCK_OPA__RULE {rule!r} is not a Rego rule name")
        self._opa = opa
        self._rule = rule
        self.failed: list[str] = []  # recorded decisions whose input the candidate fails on (a runtime error)
        self._tmp = tempfile.TemporaryDirectory(prefix="airlock-shadow-")
        try:
            self.revision = bundle.stage(policies_dir, Path(self._tmp.name))
            checked = subprocess.run([opa, "check", "--bundle", self._tmp.name], capture_output=True, text=True,
                                     timeout=120)
            if checked.returncode != 0:
                raise ShadowError(f"the candidate policy in {policies_dir} does not compile:\n"
                                  f"{(checked.stderr or checked.stdout).replace(self._tmp.name, str(policies_dir))}")
        except Exception:
            self._tmp.cleanup()
            raise

    def __enter__(self) -> Candidate:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def decide(self, items: list[Item]) -> list[PolicyDecision]:
        """The candidate's decision on each item's input, as the boundary would read it, in order.

        Raises:
            ShadowError: a package name that is not one, or OPA refused the bundle (the message says why).
        """
        raw: dict[str, Any] = {}
        by_package: dict[str, list[Item]] = {}
        for item in items:
            by_package.setdefault(item.package, []).append(item)
        for package, group in by_package.items():
            if not PACKAGE.fullmatch(package):
                raise ShadowError(f"recorded package {package!r} is not a Rego package name")
            for start in range(0, len(group), _CHUNK):
                raw.update(self._eval(package, group[start:start + _CHUNK]))
        out = []
        for item in items:
            decided = normalize_decision(raw.get(item.decision_id), self.revision)
            out.append(with_approvers(decided, item.approver_role))
        return out

    def _eval(self, package: str, group: list[Item]) -> dict[str, Any]:
        # ``v`` first: a ``with`` value that refers to ``input`` itself would be read from the replaced input
        query = (f"x := {{it.id: d | some it in input.items; v := it.input; "
                 f"d := data.{package}.{self._rule} with input as v}}")
        body = json.dumps({"items": [{"id": i.decision_id, "input": i.input} for i in group]})
        try:
            result = subprocess.run([self._opa, "eval", "--format", "json", "--bundle", self._tmp.name,
                                     "--stdin-input", query], input=body, capture_output=True, text=True,
                                    timeout=_EVAL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ShadowError(f"opa eval of the candidate took over {_EVAL_TIMEOUT_S} s on {len(group)} "
                              "recorded input(s)") from None
        if result.returncode != 0:
            if not _runtime_error(result.stdout):  # not the input's doing (OPA itself failed): no report
                raise ShadowError(f"opa eval of the candidate failed: {(result.stderr or result.stdout)[:2000]}")
            if len(group) == 1:  # this input makes the candidate fail, as the boundary's OPA would
                self.failed.append(group[0].decision_id)
                return {}  # undefined: read as a denial ("policy unavailable")
            half = len(group) // 2
            return self._eval(package, group[:half]) | self._eval(package, group[half:])
        answer = json.loads(result.stdout or "{}")
        try:
            value = answer["result"][0]["bindings"]["x"]
        except (KeyError, IndexError, TypeError):
            return {}  # undefined: every decision of this package is undefined
        return value if isinstance(value, dict) else {}
