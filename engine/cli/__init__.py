"""The ``airlock`` command line (Typer + Rich)."""

from engine.cli import (  # noqa: F401  (registers the commands)
    approvals,
    evals,
    gate,
    policy,
    project,
    prompts,
    runs,
    senders,
    stack,
)
from engine.cli._app import app, main_entry, parse_input

__all__ = ["app", "main_entry", "parse_input"]
