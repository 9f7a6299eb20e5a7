"""``airlock init`` writes a project that runs, from its own folder, on the real stack: allowed, approved and
denied calls, its policy tests, and no chain it does not need."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.local import processes as stack

pytestmark = pytest.mark.integration


def _airlock_command() -> list[str]:
    """The installed console script, as a user types it (else the module)."""
    script = Path(sys.executable).parent / "airlock"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "engine.cli"]


def test_an_initialised_project_runs_allowed_approved_and_denied_calls(tmp_path: Path) -> None:
    ports = {name: stack.free_port() for name in ("temporal", "temporal_ui", "opa", "anvil", "model", "web")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    env.update({"AIRLOCK_TEMPORAL__ADDRESS": f"127.0.0.1:{ports['temporal']}",
                "AIRLOCK_TEMPORAL__UI_PORT": str(ports["temporal_ui"]),
                "AIRLOCK_OPA__URL": f"http://127.0.0.1:{ports['opa']}",
                "AIRLOCK_CHAIN__RPC_URL": f"http://127.0.0.1:{ports['anvil']}",
                "AIRLOCK_LLM__SCRIPTED_URL": f"http://127.0.0.1:{ports['model']}/v1",
                "AIRLOCK_UI__PORT": str(ports["web"]), "COLUMNS": "200"})
    project = tmp_path / "shop"

    def airlock(*args: str, stdin: str | None = None, cwd: Path = project) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_airlock_command(), *args], cwd=cwd, env=env, text=True, capture_output=True,
                              timeout=120, input=stdin)

    made = airlock("init", "shop", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert set(json.loads(made.stdout)["files"]) == {
        "README.md", ".gitignore", "workflows/grant_credit.yaml", "workflows/scripts/grant_credit.turns.yaml",
        "tools/__init__.py", "tools/credits.py", "policies/credits.rego", "policies/credits_test.rego"}
    again = airlock("init", "shop", cwd=tmp_path)
    assert again.returncode == 2 and "overwrites nothing" in again.stderr

    tests = subprocess.run([stack.find_binary("opa"), "test", "policies"], cwd=project, capture_output=True,
                           text=True, timeout=60)
    assert tests.returncode == 0 and "PASS: 8/8" in tests.stdout, tests.stdout + tests.stderr
    checked = airlock("validate", "workflows/grant_credit.yaml")
    assert checked.returncode == 0, checked.stderr + checked.stdout

    try:
        up = airlock("up", "--json")
        assert up.returncode == 0, up.stderr + up.stdout
        report = json.loads(up.stdout)
        said = {step["part"]: step["said"] for step in report["steps"]}
        assert said["anvil"].startswith("not started") and not (project / ".airlock" / "logs" / "anvil.log").exists()
        assert said["opa"].startswith(f"started at 127.0.0.1:{ports['opa']}")
        assert {row["name"]: row["state"] for row in report["status"]} == {
            "temporal": "running", "opa": "running", "anvil": "stopped", "model": "running", "worker": "running",
            "ui": "running"}
        for name, role in (("ana", "support"), ("omar", "ops")):
            added = airlock("users", "add", name, "--role", role, "--password-stdin", "--json",
                            stdin=f"{name}-password\n")
            assert added.returncode == 0, added.stderr
            assert json.loads(added.stdout) == {"name": name, "roles": [role], "tenants": ["default"]}

        def run(message: str, *extra: str) -> subprocess.CompletedProcess[str]:
            return airlock("run", "grant-credit", "--as", "ana", "--password-stdin", "--json", *extra,
                           "--input", json.dumps({"customer_id": "cus_ana", "message": message}),
                           stdin="ana-password\n")

        coffee = run("my coffee order arrived cold", "--wait")
        assert coffee.returncode == 0, coffee.stderr + coffee.stdout
        calls = json.loads(coffee.stdout)["tool_calls"]
        assert [(c["tool"], c["outcome"]) for c in calls] == [("grant_credit", "executed")]

        started = run("the service had an outage all day")
        assert started.returncode == 0, started.stderr
        run_id = json.loads(started.stdout)["run_id"]
        pending: list[dict[str, object]] = []
        for _ in range(120):
            listed = airlock("approvals", "list", "--json")
            pending = [a for a in json.loads(listed.stdout) if a["run_id"] == run_id]
            if pending:
                break
            time.sleep(0.5)
        assert pending and "credits above 20 need one approval by ops" in json.dumps(pending[0])
        mine = airlock("approve", str(pending[0]["approval_id"]), "--as", "ana", "--password-stdin",
                       stdin="ana-password\n")
        assert mine.returncode != 0  # who asked never approves
        approved = airlock("approve", str(pending[0]["approval_id"]), "--as", "omar", "--password-stdin", "--json",
                           stdin="omar-password\n")
        assert approved.returncode == 0, approved.stderr + approved.stdout
        for _ in range(120):
            shown = json.loads(airlock("runs", "show", run_id, "--json").stdout)
            if shown["run"]["status"] == "completed":
                break
            time.sleep(0.5)
        assert shown["run"]["status"] == "completed"

        denied = run("please refund everything")
        assert denied.returncode == 0
        denied_id = json.loads(denied.stdout)["run_id"]
        for _ in range(120):
            shown = json.loads(airlock("runs", "show", denied_id, "--json").stdout)
            if shown["run"]["status"] == "completed":
                break
            time.sleep(0.5)
        assert "credits above 200 are not allowed" in json.dumps(shown["timeline"])

        with sqlite3.connect(project / ".airlock" / "airlock.db") as db:
            granted = sorted(str(r[0]) for r in db.execute("SELECT amount FROM starter_credits"))
        assert granted == ["5", "80"] or granted == ["5.00", "80.00"]
    finally:
        down = airlock("down", "--json")
    assert down.returncode == 0, down.stderr
    stopped = json.loads(down.stdout)
    assert {step["part"] for step in stopped["steps"]} >= {"worker", "ui", "opa", "temporal"}
    assert {row["state"] for row in stopped["status"]} == {"stopped"}
