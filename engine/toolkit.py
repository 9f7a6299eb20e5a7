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
import importlib.util
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, get_type_hints

from pydantic import BaseModel, BeforeValidator, PrivateAttr, WithJsonSchema

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

#: A decimal amount as tools accept it: ASCII digits, an optional point, no sign, exponent or spaces.
#: (``\d`` would also match other scripts' digits, which ``Decimal`` silently reads as numbers.)
DECIMAL_TEXT = r"^[0-9]{1,30}(\.[0-9]{1,30})?$"


def decimal_text(value: object) -> str:
    """``value`` if it is an ASCII decimal string (see ``DECIMAL_TEXT``).

    Raises:
        ValueError: naming what an amount must look like (pydantic reports it with the field).
    """
    if not isinstance(value, str) or re.fullmatch(DECIMAL_TEXT, value, flags=re.ASCII) is None:
        raise ValueError('must be a decimal string of ASCII digits, such as "12.50" (no number, sign, '
                         'exponent or spaces; at most 30 digits each side of the point)')
    return value


_AS_STRING = WithJsonSchema({"type": "string", "pattern": DECIMAL_TEXT})

#: A decimal amount kept as the exact text, e.g. token amounts converted with the token's decimals.
DecimalString = Annotated[str, BeforeValidator(decimal_text), _AS_STRING]

#: ``Decimal`` parsed only from an ASCII decimal string (a JSON number is refused: it may have lost
#: digits already; Decimal from a string never rounds). Combine with ``Field(gt=, max_digits=, decimal_places=)``.
DecimalText = Annotated[Decimal, BeforeValidator(decimal_text), _AS_STRING]


class ToolContext(BaseModel):
    """What a tool knows about the action it performs. Built by the worker inside the activity (never in a run's
    history); no key or token, but ``database_url`` may carry the database's password: never log or return it.

    Attributes:
        run_id: the run (Temporal workflow id).
        step: the model step that proposed the call.
        idempotency_key: stable across retries of the same action; a tool
            must use it so a retried execution never repeats an effect.
        database_url: the Airlock database, for tools that keep SQL records (may carry its password).
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

    def with_chain(self, access: Any) -> ToolContext:
        """This context with the worker's chain access (reads, sender address, send once)."""
        self._chain = access
        return self

    def chain(self) -> Any:
        """The worker's :class:`engine.adapters.chain_access.ChainAccess`; the signing key stays inside it.

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
    serialize: Callable[..., str] | None = None
    # Which of its output a tool vouches for: all of it (True), none (False: a third party may have written
    # it), or these fields (dotted paths; the rest is untrusted; ``engine.boundary.provenance.source_of``
    # applies them). See ``tool(trusted=...)``.
    trusted: bool | frozenset[str] = False


def tool(
    *,
    consequential: bool = False,
    facts: Callable[..., dict[str, Any]] | None = None,
    name: str | None = None,
    serialize: Callable[..., str] | None = None,
    trusted: bool | Sequence[str] = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function as an Airlock tool (optional: plain functions work too).

    ``serialize(args, ctx) -> str`` names what the action touches (an account, an
    order): actions with the same key run one at a time, from the re-check of
    their facts to the end of their effect, so limits the policy checked on the
    facts hold when several are approved at once.

    ``trusted`` says which of the tool's output it vouches for, as a source of
    later arguments (``input.provenance``): ``True`` for all of it (a balance
    read from the node), a list of fields (``["amount", "date"]`` of a
    transaction history whose ``subject`` a third party writes), or ``False``,
    the default: unlabelled output is untrusted. A tool whose result is a
    pydantic model may instead mark fields ``Field(json_schema_extra={"trusted": True})``.
    """

    if isinstance(trusted, str):  # a bare "amount" would be read as its letters
        raise TypeError(f"tool(trusted=...) takes True, False or a list of fields, not the string {trusted!r}")

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        func.__airlock_tool__ = {  # type: ignore[attr-defined]
            "consequential": consequential,
            "facts": facts,
            "name": name or func.__name__,
            "serialize": serialize,
            "trusted": trusted if isinstance(trusted, bool) else frozenset(trusted),
        }
        return func

    return mark


# Spec import paths may name only these packages, found inside the project: a spec
# must never reach `os:system`, `builtins:eval` or a library's functions.
PROJECT_PACKAGES = ("tools", "workflows")
_PROJECT_ROOTS: list[Path] = []


def allow_project_roots(*roots: Path) -> None:
    """Folders whose ``tools``/``workflows`` packages spec import paths may name."""
    for root in roots:
        resolved = Path(root).resolve()
        if resolved not in _PROJECT_ROOTS:
            _PROJECT_ROOTS.append(resolved)


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def check_import_path(import_path: str) -> None:
    """Refuse an import path outside the project's own packages, before anything is imported.

    Raises:
        ValueError: malformed, another package, a private name, or a package found outside the project.
    """
    if not _IMPORT_PATH.match(import_path):
        raise ValueError(f"{import_path!r} is not an import path of the form package.module:name")
    module_name, attr = import_path.split(":")
    top = module_name.split(".")[0]
    if top not in PROJECT_PACKAGES:
        raise ValueError(f"{import_path}: only the project's own packages ({', '.join(PROJECT_PACKAGES)}) "
                         "may be named here")
    if attr.startswith("_") or any(part.startswith("_") for part in module_name.split(".")):
        raise ValueError(f"{import_path}: private names cannot be named here")
    found = importlib.util.find_spec(top)
    if found is None:
        raise ValueError(f"cannot import module {module_name!r}: no package {top!r} in the project")
    places = [Path(p) for p in (found.submodule_search_locations or [found.origin or ""])]
    if not _PROJECT_ROOTS or not all(any(_inside(p, r) for r in _PROJECT_ROOTS) for p in places):
        raise ValueError(f"{import_path}: package {top!r} is at {', '.join(map(str, places))}, outside the "
                         f"project ({', '.join(map(str, _PROJECT_ROOTS)) or 'none configured'})")


def import_object(import_path: str) -> Any:
    """What ``package.module:name`` names in the project, or None when the module has no such name.

    Raises:
        ValueError: the path is not allowed (see :func:`check_import_path`), the module does not
            import, or the name is not defined in that module (imported from elsewhere).
    """
    check_import_path(import_path)
    module_name, _, attr = import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a project module may fail at import in any way (SyntaxError too)
        raise ValueError(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    found = getattr(module, attr, None)
    if found is not None and getattr(found, "__module__", None) != module_name:
        raise ValueError(f"{import_path}: {attr!r} is not defined in {module_name} (it comes from "
                         f"{getattr(found, '__module__', None) or 'elsewhere'}); name it where it is defined")
    return found


def resolve_tool(import_path: str) -> ToolDef:
    """Import ``package.module:function`` and read its schema.

    Raises:
        ValueError: the path is malformed, does not import, or the function
            does not take a pydantic model as its first argument.
    """
    func = import_object(import_path)
    module_name, attr = import_path.split(":")
    if func is None or not callable(func):
        raise ValueError(f"module {module_name!r} has no function {attr!r}")
    params = list(inspect.signature(func).parameters.values())
    try:
        hints = get_type_hints(func)
    except Exception as exc:  # noqa: BLE001 - e.g. a hint naming what is imported only for type checkers
        raise ValueError(f"{import_path}: its type hints cannot be read: {type(exc).__name__}: {exc}") from None
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
        serialize=meta.get("serialize"),
        trusted=_output_trust(meta.get("trusted", False), hints.get("return")),
    )


def _output_trust(declared: bool | frozenset[str], returns: Any) -> bool | frozenset[str]:
    """What ``tool(trusted=...)`` declared, or, for a result model, its fields marked trusted."""
    if declared is not False or not (inspect.isclass(returns) and issubclass(returns, BaseModel)):
        return declared
    marked = frozenset(name for name, field in returns.model_fields.items()
                       if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("trusted") is True)
    return marked or False
