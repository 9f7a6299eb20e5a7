"""Tools: typed functions the model may propose, resolved by import path.

A tool is a plain function whose first parameter is annotated with a pydantic
model (its argument schema) and whose second is a :class:`ToolContext`::

    @tool(consequential=True, facts=refund_facts)
    def issue_refund(args: RefundArgs, ctx: ToolContext) -> dict: ...

``consequential`` marks tools whose effects matter (money moves); ``facts`` is
an optional read-only function whose result goes into the policy input.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, get_type_hints

from pydantic import BaseModel, PrivateAttr

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ToolContext(BaseModel):
    """What a tool knows about the action it performs; never holds secrets.

    Attributes:
        run_id: the run (Temporal workflow id).
        step: the model step that proposed the call.
        idempotency_key: stable across retries of the same action; a tool
            must use it so a retried execution never repeats an effect.
        database_url: the Airlock database, for tools that keep SQL records.
        requested_by: the user who started the run.
        tenant: the tenant the run belongs to.
        run_input: the run's input document.
        chain_id: the chain the workflow spec is written for (``chain_id``), if any.
    """

    run_id: str
    step: int
    idempotency_key: str
    database_url: str
    requested_by: str
    tenant: str
    run_input: dict[str, Any] = {}
    chain_id: int | None = None
    _chain: Any = PrivateAttr(default=None)

    def with_chain(self, access: Any) -> "ToolContext":
        """This context with the worker's chain access (reads, sender address, send once)."""
        self._chain = access
        return self

    def chain(self) -> Any:
        """The worker's :class:`engine.chain_tx.ChainAccess`; the signing key stays inside it.

        Raises:
            ToolExecutionError: this worker has no chain configured.
        """
        if self._chain is None:
            from engine.errors import ToolExecutionError

            raise ToolExecutionError("this worker has no chain access configured")
        return self._chain


@dataclass(frozen=True)
class ToolDef:
    """A resolved tool."""

    import_path: str
    name: str
    func: Callable[..., Any]
    args_model: type[BaseModel]
    consequential: bool
    description: str
    facts: Callable[..., dict[str, Any]] | None

    def json_schema(self) -> dict[str, Any]:
        """The argument schema as the model sees it (OpenAI function format)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.args_model.model_json_schema(),
            },
        }


def tool(
    *,
    consequential: bool = False,
    facts: Callable[..., dict[str, Any]] | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function as an Airlock tool (optional: plain functions work too)."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        func.__airlock_tool__ = {  # type: ignore[attr-defined]
            "consequential": consequential,
            "facts": facts,
            "name": name or func.__name__,
        }
        return func

    return mark


def import_object(import_path: str) -> Any:
    """What ``package.module:name`` names, or None when the module has no such name.

    Raises:
        ValueError: the module does not import.
    """
    module_name, _, attr = import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    return getattr(module, attr, None)


def resolve_tool(import_path: str) -> ToolDef:
    """Import ``package.module:function`` and read its schema.

    Raises:
        ValueError: the path is malformed, does not import, or the function
            does not take a pydantic model as its first argument.
    """
    if not _IMPORT_PATH.match(import_path):
        raise ValueError(f"{import_path!r} is not an import path of the form package.module:function")
    module_name, attr = import_path.split(":")
    func = import_object(import_path)
    if func is None or not callable(func):
        raise ValueError(f"module {module_name!r} has no function {attr!r}")
    params = list(inspect.signature(func).parameters.values())
    hints = get_type_hints(func)
    args_model = hints.get(params[0].name) if params else None
    if not (inspect.isclass(args_model) and issubclass(args_model, BaseModel)):
        raise ValueError(f"{import_path}: first parameter must be annotated with a pydantic model")
    meta = getattr(func, "__airlock_tool__", {})
    doc = inspect.getdoc(func) or ""
    return ToolDef(
        import_path=import_path,
        name=meta.get("name", func.__name__),
        func=func,
        args_model=args_model,
        consequential=bool(meta.get("consequential", False)),
        description=doc.split("\n\n")[0],
        facts=meta.get("facts"),
    )
