"""The policy's input for one call, as the worker builds it from its own records, and what tells a re-check
whether that input changed since the decision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.boundary import policy_document
from engine.boundary.decision import canonical_json
from engine.boundary.provenance import provenance_document, source_of
from engine.runtime.payloads import ResolvedRun, ToolCallRecord
from engine.store.calls import Edit, PastCall
from engine.toolkit import ToolDef

Trust = bool | frozenset[str]


def policy_input(run: ResolvedRun, call: ToolCallRecord, tool: ToolDef, past: list[PastCall],
                 trust_of: Callable[[str], Trust], approved_by: list[str] | None = None,
                 edits: list[Edit] | None = None) -> dict[str, Any]:
    """``call``'s policy input: what the run did before it (``past``), and where each argument came from.

    Sources: the run's input (``user``), its system prompt (``config``), the arguments verified people wrote
    in an edit of this action (``person:<name>``, from the store: their assertions were bound to exactly
    those arguments) and each earlier result (``tool:<name>``), trusted as ``trust_of(tool)`` declares, and
    only if that call's own arguments were trusted when it was decided.
    """
    trust = {c.key: trust_of(c.tool) if c.args_trusted else False for c in past}
    previous = [{"call_id": c.call_id, "tool": c.tool, "args": c.args, "outcome": c.outcome, "result": c.result,
                 "trusted": _shown(trust[c.key])} for c in past]
    sources = [*source_of("user", {"input": run.input}, trusted=True),
               *source_of("config", {"system_prompt": run.spec.prompt_text}, trusted=True)]
    for edit in edits or []:
        sources += source_of(f"person:{edit.by}", edit.args, trusted=True)
    for c in past:
        if c.result is not None:
            vouched = trust[c.key]
            sources += source_of(f"tool:{c.tool}", c.result, call_id=c.call_id, echoes=[c.args],
                                 trusted=vouched if isinstance(vouched, bool) else dict.fromkeys(vouched, True))
    document: dict[str, Any] = policy_document(run, call, consequential=tool.consequential, previous=previous,
                                               provenance=provenance_document(call.args, sources),
                                               approved_by=approved_by)
    return document


def effects(run: Any) -> str:
    """What a run did, as a policy input shows it: its step, input and executed calls. Another call's
    approval, rejection or denial since the decision is not a reason to decide again; an execution is."""
    if not isinstance(run, dict):
        return ""
    done = [p for p in run.get("previous") or [] if isinstance(p, dict) and p.get("outcome") == "executed"]
    return canonical_json({"step": run.get("step"), "input": run.get("input"), "calls": run.get("calls"),
                           "executed": done})


def changed_facts(before: dict[str, Any], after: dict[str, Any], path: str = "") -> list[str]:
    """Dotted paths where two fact snapshots differ, ignoring ``volatile`` (nonce, gas, fees, block)."""
    out: list[str] = []
    for key in sorted(set(before) | set(after)):
        if not path and key == "volatile":
            continue
        a, b, where = before.get(key), after.get(key), f"{path}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_facts(a, b, where + ".")
        elif a != b:
            out.append(where)
    return out


def _shown(trust: Trust) -> bool | list[str]:
    """A tool's output trust as the policy reads it: true, false, or the fields it vouches for."""
    return trust if isinstance(trust, bool) else sorted(trust)
