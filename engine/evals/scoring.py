"""Scoring an eval: what a case's run came to against what the case expects, and a version's figures.

Pure functions of data: no services, no clock. The runner observes a run
(:class:`Observation`), :func:`score` lists every expectation that did not
hold, and :func:`summarise` and :func:`difference` give the figures a
dataset's table and ``--compare`` print.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from engine.evals.dataset import Expect
from engine.runtime.payloads import RunResult


class ObservedCall(BaseModel):
    """One proposed tool call: the tool, the policy's decision (None: never reached policy), what became of it."""

    tool: str
    decision: str | None = None
    outcome: str


class Observation(BaseModel):
    """What a case's run came to, as the eval saw it."""

    run_id: str | None = None
    status: str
    reason: str | None = None
    output: str | None = None
    structured: dict[str, Any] | None = None
    calls: list[ObservedCall] = Field(default_factory=list)
    cost: float = 0.0
    latency_ms: float = 0.0
    steps: int = 0

    @property
    def escalations(self) -> int:
        """Calls the policy sent to people (``require_approval``)."""
        return sum(1 for c in self.calls if c.decision == "require_approval")


def observe(result: RunResult, latency_ms: float) -> Observation:
    """An observation of a finished run."""
    calls = [ObservedCall(tool=c.tool, decision=c.decision.outcome if c.decision else None, outcome=c.outcome)
             for c in result.tool_calls]
    cost = result.usage.get("cost", 0.0)
    return Observation(run_id=result.run_id, status=result.status, reason=result.reason, output=result.output,
                       structured=result.structured, calls=calls,
                       cost=float(cost) if isinstance(cost, int | float) else 0.0,
                       latency_ms=round(latency_ms, 1), steps=result.steps)


class CaseScore(BaseModel):
    """One case against one version: passed when no expectation failed."""

    case_id: str
    observation: Observation
    failures: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def score(case_id: str, expect: Expect, seen: Observation) -> CaseScore:
    """Every expectation of ``expect`` that ``seen`` does not meet, in words."""
    failures: list[str] = []
    if seen.status != expect.status:
        failures.append(f"status: expected {expect.status}, got {seen.status}"
                        + (f" ({seen.reason})" if seen.reason else ""))
    failures += _output_failures(expect, seen)
    failures += _tool_failures(expect, seen)
    failures += _per_tool("outcomes", expect.outcomes, seen, lambda c: c.outcome)
    failures += _per_tool("decisions", expect.decisions, seen, lambda c: c.decision or "none")
    if expect.max_cost is not None and seen.cost > expect.max_cost:
        failures.append(f"max_cost: {seen.cost:g} spent, at most {expect.max_cost:g}")
    if expect.max_latency_ms is not None and seen.latency_ms > expect.max_latency_ms:
        failures.append(f"max_latency_ms: took {seen.latency_ms:g} ms, at most {expect.max_latency_ms:g}")
    if expect.max_steps is not None and seen.steps > expect.max_steps:
        failures.append(f"max_steps: took {seen.steps} steps, at most {expect.max_steps}")
    return CaseScore(case_id=case_id, observation=seen, failures=failures)


def _output_failures(expect: Expect, seen: Observation) -> list[str]:
    failures = []
    if expect.output and seen.structured is None:
        failures.append("output: the run has no structured output")
    elif expect.output and seen.structured is not None:
        for name, wanted in expect.output.items():
            got = seen.structured.get(name, _MISSING)
            if got is _MISSING:
                failures.append(f"output.{name}: missing")
            elif got != wanted:
                failures.append(f"output.{name}: expected {wanted!r}, got {got!r}")
    for text in expect.output_contains:
        if text not in (seen.output or ""):
            failures.append(f"output_contains: the final answer does not contain {text!r}")
    return failures


_MISSING = object()


def _tool_failures(expect: Expect, seen: Observation) -> list[str]:
    called = [c.tool for c in seen.calls]
    failures = []
    if expect.tools_called is not None:
        same = (called == expect.tools_called if expect.tools_order == "exact"
                else Counter(called) == Counter(expect.tools_called))
        if not same:
            how = "in this order" if expect.tools_order == "exact" else "in any order"
            failures.append(f"tools_called: expected {expect.tools_called} {how}, got {called}")
    for tool in expect.tools_not_called:
        if tool in called:
            failures.append(f"tools_not_called: {tool} was called {called.count(tool)} time(s)")
    return failures


def _per_tool(what: str, wanted: dict[str, Any], seen: Observation, value: Any) -> list[str]:
    """``outcomes``/``decisions``: one value means every call of the tool (at least one), a list one per call."""
    failures = []
    for tool, expected in wanted.items():
        got = [value(c) for c in seen.calls if c.tool == tool]
        if isinstance(expected, list):
            if got != expected:
                failures.append(f"{what}.{tool}: expected {expected}, got {got}")
        elif not got:
            failures.append(f"{what}.{tool}: expected {expected}, but {tool} was never called")
        elif any(g != expected for g in got):
            failures.append(f"{what}.{tool}: expected {expected} for every call, got {got}")
    return failures


class Summary(BaseModel):
    """A version's figures over a dataset."""

    cases: int
    passed: int
    success_rate: float
    cost: float
    cost_per_success: float | None
    escalations: int
    mean_latency_ms: float | None


def summarise(scores: list[CaseScore]) -> Summary:
    """Success rate, cost (all runs, and per successful run), escalations and mean latency."""
    passed = [s for s in scores if s.passed]
    cost = sum(s.observation.cost for s in scores)
    passed_cost = sum(s.observation.cost for s in passed)
    latencies = [s.observation.latency_ms for s in scores]
    return Summary(cases=len(scores), passed=len(passed),
                   success_rate=round(len(passed) / len(scores), 4) if scores else 0.0,
                   cost=round(cost, 8), cost_per_success=round(passed_cost / len(passed), 8) if passed else None,
                   escalations=sum(s.observation.escalations for s in scores),
                   mean_latency_ms=round(sum(latencies) / len(latencies), 1) if latencies else None)


class Difference(BaseModel):
    """What changed from a baseline version to a candidate (candidate minus baseline)."""

    success_rate: float
    cost_per_success: float | None
    escalations: int
    newly_failing: list[str]
    newly_passing: list[str]


def difference(baseline: list[CaseScore], candidate: list[CaseScore]) -> Difference:
    """The candidate's figures minus the baseline's, and the cases whose verdict changed."""
    a, b = summarise(baseline), summarise(candidate)
    before = {s.case_id: s.passed for s in baseline}
    after = {s.case_id: s.passed for s in candidate}
    cost = (round(b.cost_per_success - a.cost_per_success, 8)
            if a.cost_per_success is not None and b.cost_per_success is not None else None)
    return Difference(success_rate=round(b.success_rate - a.success_rate, 4), cost_per_success=cost,
                      escalations=b.escalations - a.escalations,
                      newly_failing=[c for c, ok in after.items() if not ok and before.get(c, False)],
                      newly_passing=[c for c, ok in after.items() if ok and not before.get(c, True)])
