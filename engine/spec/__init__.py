"""Workflow specs: what a project imports to write one, and how the engine loads it.

:mod:`~engine.spec.models` holds the frozen models (the authored
:class:`WorkflowSpec` and the loader's :class:`ResolvedSpec`),
:mod:`~engine.spec.loader` loads and resolves a YAML or Python spec, and
:mod:`~engine.spec.source` reads the file and locates each problem by line
and field. This module is the public surface.
"""

from engine.spec.loader import add_import_roots, definition_hash, load_spec, resolve_output_model
from engine.spec.models import (
    MAX_DURATION,
    MAX_SPEC_BYTES,
    STEP_CLASSES,
    ApprovalSpec,
    EndpointSpec,
    InputGuardSpec,
    LimitsSpec,
    ModelSpec,
    ResolvedSpec,
    ToolSpec,
    WorkflowSpec,
    endpoint_label,
    parse_duration,
    shown_spec,
)
from engine.spec.source import MAX_NESTING

__all__ = [
    "MAX_DURATION", "MAX_NESTING", "MAX_SPEC_BYTES", "STEP_CLASSES",
    "ApprovalSpec", "EndpointSpec", "InputGuardSpec", "LimitsSpec", "ModelSpec", "ResolvedSpec", "ToolSpec",
    "WorkflowSpec",
    "add_import_roots", "definition_hash", "endpoint_label", "load_spec", "parse_duration", "resolve_output_model",
    "shown_spec",
]
