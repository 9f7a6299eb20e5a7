"""The workflow's declarations of its activities and the worker's implementations stay one contract."""

from __future__ import annotations

import inspect
from typing import Any, get_type_hints

from temporalio import activity

from engine.runtime import contract
from engine.runtime.activities import AirlockActivities


def _types(fn: Any) -> tuple[list[Any], Any]:
    hints = get_type_hints(fn)
    params = [p.name for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    return [hints[p] for p in params], hints["return"]


def test_every_declared_activity_is_implemented_with_the_same_name_and_types() -> None:
    declared = {activity._Definition.must_from_callable(fn).name: fn
                for _, fn in inspect.getmembers(contract, inspect.iscoroutinefunction)}
    implemented = {activity._Definition.must_from_callable(fn).name: fn
                   for _, fn in inspect.getmembers(AirlockActivities, inspect.iscoroutinefunction)
                   if activity._Definition.from_callable(fn) is not None}
    assert set(declared) == set(implemented), set(declared) ^ set(implemented)
    for name, fn in declared.items():
        assert _types(fn) == _types(implemented[name]), name
        params, result = _types(fn)
        assert len(params) == 1 and result is not None, f"{name}: one input model, one result model"
