"""The first check of a proposed call: its arguments, as text from the model (or an editor).

The text is hostile input: it must be a JSON object within the input limits
(``engine.boundary.inputs``) before the tool's own argument model reads it. Pure: no
I/O, so the same check runs in the activity and in the fuzz tests.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from engine.boundary.inputs import MAX_ARGUMENT_BYTES, parse_object
from engine.errors import InputError
from engine.runtime.activity_io import ValidateCallResult


def validation_problems(exc: ValidationError, root: str) -> str:
    """``field: message; ...`` for each problem pydantic found (``root`` names the whole value)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in exc.errors())


def check_arguments(args_model: type[BaseModel], raw: str) -> ValidateCallResult:
    """The arguments ``raw`` holds, validated by ``args_model``, or why not."""
    try:
        args = args_model.model_validate(parse_object(raw or "{}", "arguments", limit=MAX_ARGUMENT_BYTES))
    except InputError as exc:
        return ValidateCallResult(ok=False, error=str(exc))
    except ValidationError as exc:
        return ValidateCallResult(ok=False, error=validation_problems(exc, "(arguments)"))
    return ValidateCallResult(ok=True, args=args.model_dump(mode="json"))
