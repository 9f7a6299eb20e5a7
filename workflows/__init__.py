"""Workflow definitions shipped as examples (YAML and Python)."""
