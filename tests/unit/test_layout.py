"""Each adapter is the only importer of its library, and the store the only one of SQL.

Read from the source with ``ast`` (function-level imports count too), over
``engine/`` and the project's ``tools/``: importing one of these libraries
anywhere else fails here, naming the module. Call the adapter instead, or
give it the function you need.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# library (top-level import name, or a dotted prefix) -> the only modules that may import it
OWNERS: dict[str, set[str]] = {
    "web3": {"engine/adapters/chain.py"},
    "eth_abi": {"engine/adapters/chain_codec.py"},
    "eth_utils": {"engine/adapters/chain_codec.py"},
    "hexbytes": {"engine/adapters/chain.py"},
    "eth_account": {"engine/adapters/chain_tx.py", "engine/adapters/chain_keys.py"},
    "openai": {"engine/adapters/llm.py"},
    "opentelemetry": {"engine/adapters/tracing.py"},
    "temporalio.contrib.opentelemetry": {"engine/adapters/tracing.py"},
    "opa_client": {"engine/boundary/policy.py"},
    "aiohttp": {"engine/boundary/policy.py"},
    # A folder (ending in /) owns a library for every module in it. The support tool keeps its own ledger
    # tables (created by the store's migrations); the tool `airlock init` writes into a new project keeps its
    # own table (project code, copied out; not the engine's).
    "sqlalchemy": {"engine/store/", "tools/support.py", "engine/local/starter/tools/credits.py"},
    "sqlmodel": {"engine/store/", "tools/support.py"},
    "alembic": {"engine/store/"},
}


def _owned(module: str, owners: set[str]) -> bool:
    return module in owners or any(owner.endswith("/") and module.startswith(owner) for owner in owners)


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # from temporalio.contrib import x
    return names


def _importers() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {library: set() for library in OWNERS}
    for path in sorted([*ROOT.glob("engine/**/*.py"), *ROOT.glob("tools/**/*.py")]):
        module = path.relative_to(ROOT).as_posix()
        for name in _imported(ast.parse(path.read_text(), filename=module)):
            for library in OWNERS:
                if name == library or name.startswith(library + "."):
                    found[library].add(module)
    return found


IMPORTERS = _importers()


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_only_its_adapter_imports_the_library(library: str) -> None:
    outside = sorted(m for m in IMPORTERS[library] if not _owned(m, OWNERS[library]))
    assert not outside, f"{library} is imported outside its owner: {outside}"


@pytest.mark.parametrize("library", ["web3", "eth_account", "openai", "opentelemetry", "opa_client", "sqlmodel"])
def test_the_adapter_is_still_where_the_table_says(library: str) -> None:
    assert IMPORTERS[library], f"no module imports {library}: update OWNERS"


def test_the_scan_sees_function_level_and_from_imports() -> None:
    tree = ast.parse("def f():\n    import web3.exceptions\nfrom temporalio.contrib import opentelemetry\n")
    assert {"web3.exceptions", "temporalio.contrib.opentelemetry"} <= _imported(tree)
