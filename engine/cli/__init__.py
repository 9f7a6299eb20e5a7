"""The ``airlock`` command line (Typer + Rich)."""

from engine.cli import approvals, policy, project, prompts, runs, senders, stack  # noqa: F401  (registers the commands)
from engine.cli._app import app, main_entry, parse_input

__all__ = ["app", "main_entry", "parse_input"]
