"""Activities: the only place the run touches the world (model, OPA, SQL, tools).

Names are pinned so a rename never breaks history. Engine errors become
``ApplicationError`` with ``type`` set to the error class name. One class,
:class:`AirlockActivities`, built with its dependencies, serves them all; its
parts live beside it by concern (people, the run's bookkeeping, actions).
"""

from __future__ import annotations

from typing import Any

from engine.boundary.arguments import validation_problems
from engine.runtime.activities._actions import ActionActivities
from engine.runtime.activities._people import PeopleActivities
from engine.runtime.activities._run import RunActivities

__all__ = ["AirlockActivities", "validation_problems"]


class AirlockActivities(PeopleActivities, RunActivities, ActionActivities):
    """Every activity of a worker, with its dependencies."""

    def all(self) -> list[Any]:
        """Every activity, for the worker."""
        return [self.resolve_run, self.verify_person, self.record_run, self.guard_input, self.call_model,
                self.validate_tool_call, self.validate_output, self.evaluate_policy, self.open_approvals,
                self.close_approval, self.settle_decision, self.check_call, self.execute_tool, self.release_lease]
