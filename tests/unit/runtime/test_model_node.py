"""The model step: step classes, budgets and limits, checked before any model is called."""

from __future__ import annotations

from typing import Any

import pytest

from engine.runtime import model_node
from engine.spec import LimitsSpec
from tests.unit.runtime.states import call, state


def test_step_classes() -> None:
    assert model_node.step_class(state()) == "plan"
    assert model_node.step_class(state(step=2, calls=[call("executed", step=2)])) == "tool_results"
    assert model_node.step_class(state(step=2, calls=[call("invalid", step=2)])) == "repair"
    assert model_node.step_class(state(step=2, calls=[call("invalid", step=1)])) == "tool_results"  # an older step's
    assert model_node.step_class(state(step=3, repairing=True)) == "repair"


@pytest.mark.parametrize("limits, usage, reason", [
    ({"max_model_calls": 2}, {"model_calls": 2, "tokens": 0, "cost": 0.0}, "budget: max_model_calls (2) reached"),
    ({"max_tokens": 100}, {"model_calls": 1, "tokens": 150, "cost": 0.0},
     "budget: max_tokens (100) reached with 150 tokens used"),
    ({"max_cost": 0.5}, {"model_calls": 1, "tokens": 0, "cost": 0.5}, "budget: max_cost (0.5) reached with 0.5 spent"),
    ({"max_cost": 0.5, "max_tokens": 100}, {"model_calls": 1, "tokens": 99, "cost": 0.49}, None),
])
def test_budgets(limits: dict[str, Any], usage: dict[str, Any], reason: str | None) -> None:
    assert model_node.over_budget(LimitsSpec(**limits), usage) == reason


@pytest.mark.parametrize("fields, expected", [
    ({"step": 8, "limits": {"max_steps": 8}}, {"status": "limit_reached", "reason": "max_steps (8) reached"}),
    ({"step": 1, "calls": [call("invalid")] * 4, "limits": {"max_repairs": 3}},
     {"status": "failed", "reason": "the model's answers failed validation 4 times; 3 repair(s) allowed "
                                    "(limits.max_repairs)"}),
    ({"step": 1, "limits": {"max_model_calls": 1}, "usage": {"model_calls": 1, "tokens": 10, "cost": 0.0}},
     {"status": "limit_reached", "reason": "budget: max_model_calls (1) reached"}),
])
async def test_a_model_step_past_a_limit_ends_without_calling_the_model(fields: dict[str, Any],
                                                                       expected: dict[str, Any]) -> None:
    assert await model_node.model_step(state(**fields), "plan") == expected  # outside a workflow: no activity to call


async def test_a_conversation_too_large_for_one_request_ends_the_run() -> None:
    big = [{"role": "user", "content": "x" * (model_node.MAX_CONVERSATION_BYTES + 1)}]
    ended = await model_node.model_step(state(step=1, messages=big), "tool_results")
    assert ended["status"] == "limit_reached" and ended["reason"].startswith("the conversation is ")
