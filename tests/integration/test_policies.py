"""``opa test policies/`` passes with the real OPA binary."""

from __future__ import annotations

import subprocess

import pytest

from engine.local import processes as stack
from tests.helpers import ROOT

pytestmark = pytest.mark.integration


def test_rego_unit_tests_pass() -> None:
    result = subprocess.run([stack.find_binary("opa"), "test", str(ROOT / "policies"), "-v"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "PASS:" in result.stdout


def test_rego_is_formatted() -> None:
    result = subprocess.run([stack.find_binary("opa"), "fmt", "--list", str(ROOT / "policies")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "", f"not formatted: {result.stdout}"
