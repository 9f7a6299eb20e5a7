"""Scoring is pure: an observation against expectations, a version's figures, and two versions' difference."""

from __future__ import annotations

from typing import Any

from engine.evals.dataset import Expect
from engine.evals.scoring import (
    CaseScore,
    Observation,
    ObservedCall,
    difference,
    observe,
    score,
    summarise,
)
from engine.runtime.payloads import PolicyDecision, RunResult, ToolCallRecord


def seen(**fields: Any) -> Observation:
    calls = [ObservedCall(tool="lookup_order", decision="allow", outcome="executed"),
             ObservedCall(tool="issue_refund", decision="require_approval", outcome="executed")]
    return Observation(**{"status": "completed", "output": "Refunded 60 EUR.", "calls": calls, "cost": 0.002,
                          "latency_ms": 900.0, "steps": 3, **fields})


def expect(**fields: Any) -> Expect:
    return Expect.model_validate(fields)


def test_a_run_that_meets_every_expectation_passes() -> None:
    result = score("c", expect(tools_called=["issue_refund", "lookup_order"], outcomes={"issue_refund": "executed"},
                               decisions={"issue_refund": "require_approval", "lookup_order": ["allow"]},
                               output_contains="60 EUR", max_cost=0.01, max_latency_ms=1000, max_steps=3,
                               tools_not_called=["send_email"]), seen())
    assert result.passed and result.failures == []


def test_every_failed_expectation_is_named() -> None:
    result = score("c", expect(status="completed", tools_called=["issue_refund", "lookup_order"],
                               tools_order="exact", outcomes={"issue_refund": "denied", "send_email": "executed"},
                               decisions={"issue_refund": ["allow"]}, output_contains="100 EUR", max_cost=0.001,
                               max_latency_ms=500, max_steps=2, tools_not_called=["lookup_order"]),
                   seen(status="limit_reached", reason="max_steps (2) reached"))
    assert result.failures == [
        "status: expected completed, got limit_reached (max_steps (2) reached)",
        "output_contains: the final answer does not contain '100 EUR'",
        "tools_called: expected ['issue_refund', 'lookup_order'] in this order, got ['lookup_order', 'issue_refund']",
        "tools_not_called: lookup_order was called 1 time(s)",
        "outcomes.issue_refund: expected denied for every call, got ['executed']",
        "outcomes.send_email: expected executed, but send_email was never called",
        "decisions.issue_refund: expected ['allow'], got ['require_approval']",
        "max_cost: 0.002 spent, at most 0.001",
        "max_latency_ms: took 900 ms, at most 500",
        "max_steps: took 3 steps, at most 2",
    ]
    assert not result.passed


def test_tools_called_in_any_order_counts_each_call() -> None:
    assert score("c", expect(tools_called=["issue_refund", "lookup_order"]), seen()).passed
    assert not score("c", expect(tools_called=["issue_refund"]), seen()).passed
    assert not score("c", expect(tools_called=["issue_refund", "issue_refund", "lookup_order"]), seen()).passed


def test_structured_output_fields_are_compared_by_value() -> None:
    structured = {"customer_id": "cus_ana", "refunded_orders": ["A-1001"]}
    assert score("c", expect(output={"refunded_orders": ["A-1001"]}), seen(structured=structured)).passed
    assert score("c", expect(output={"refunded_orders": [], "message": "x"}), seen(structured=structured)).failures == [
        "output.refunded_orders: expected [], got ['A-1001']", "output.message: missing"]
    assert score("c", expect(output={"message": "x"}), seen()).failures == [
        "output: the run has no structured output"]


def test_a_call_that_never_reached_the_policy_has_no_decision() -> None:
    invalid = seen(calls=[ObservedCall(tool="issue_refund", outcome="invalid")])
    assert score("c", expect(decisions={"issue_refund": "deny"}), invalid).failures == [
        "decisions.issue_refund: expected deny for every call, got ['none']"]


def test_the_figures_count_success_cost_per_successful_run_and_escalations() -> None:
    scores = [CaseScore(case_id="a", observation=seen(cost=0.002)),
              CaseScore(case_id="b", observation=seen(cost=0.004)),
              CaseScore(case_id="c", observation=seen(cost=0.01), failures=["status: …"])]
    figures = summarise(scores)
    assert (figures.cases, figures.passed, figures.success_rate) == (3, 2, 0.6667)
    assert figures.cost == 0.016 and figures.cost_per_success == 0.003
    assert figures.escalations == 3 and figures.mean_latency_ms == 900.0
    assert summarise([]).success_rate == 0.0 and summarise([]).cost_per_success is None


def test_the_difference_is_the_candidate_minus_the_baseline() -> None:
    ok, bad = [], ["status: …"]
    baseline = [CaseScore(case_id="a", observation=seen(cost=0.002), failures=ok),
                CaseScore(case_id="b", observation=seen(cost=0.002), failures=bad)]
    candidate = [CaseScore(case_id="a", observation=seen(cost=0.004, calls=[]), failures=bad),
                 CaseScore(case_id="b", observation=seen(cost=0.006), failures=ok)]
    diff = difference(baseline, candidate)
    assert diff.success_rate == 0.0 and diff.cost_per_success == 0.004 and diff.escalations == -1
    assert diff.newly_failing == ["a"] and diff.newly_passing == ["b"]


def test_an_observation_of_a_run_result() -> None:
    result = RunResult(run_id="r", workflow="w", version=1, status="completed", output="ok", steps=2,
                       usage={"cost": 0.25, "tokens": 10},
                       tool_calls=[ToolCallRecord(call_id="1", step=1, index=0, tool="issue_refund",
                                                  decision=PolicyDecision(outcome="require_approval"),
                                                  outcome="rejected"),
                                   ToolCallRecord(call_id="2", step=1, index=1, tool="x", outcome="invalid")])
    observed = observe(result, 1234.56)
    assert observed.calls == [ObservedCall(tool="issue_refund", decision="require_approval", outcome="rejected"),
                              ObservedCall(tool="x", decision=None, outcome="invalid")]
    assert (observed.cost, observed.latency_ms, observed.steps, observed.escalations) == (0.25, 1234.6, 2, 1)
