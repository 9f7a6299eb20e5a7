"""Workflow evaluations (``airlock eval``): datasets of cases run against workflow versions, and scored.

:mod:`~engine.evals.dataset` reads a dataset strictly, :mod:`~engine.evals.derive`
writes the definition the worker runs, :mod:`~engine.evals.runner` runs the
cases on the real stack and records them, and :mod:`~engine.evals.scoring`
scores them (pure). ``docs/evals.md`` describes the format.
"""
