"""``airlock up / status / down`` start real processes, run a workflow, and stop only their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.boundary import bundle as policybundle
from engine.local import processes as stack
from tests.conftest import Services, copy_workflows
from tests.helpers import ROOT

pytestmark = pytest.mark.integration


def test_up_run_status_down(services: Services, tmp_path: Path) -> None:
    ports = {name: stack.free_port() for name in ("temporal", "ui", "anvil", "model", "web")}
    env = {**os.environ, "AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_STATE_DIR": str(tmp_path / "state"),
           "AIRLOCK_TEMPORAL__ADDRESS": f"127.0.0.1:{ports['temporal']}",
           "AIRLOCK_TEMPORAL__UI_PORT": str(ports["ui"]),
           "AIRLOCK_OPA__URL": services.opa_url,  # already running: up must use it and down must leave it
           "AIRLOCK_CHAIN__RPC_URL": f"http://127.0.0.1:{ports['anvil']}",
           "AIRLOCK_LLM__SCRIPTED_URL": f"http://127.0.0.1:{ports['model']}/v1",
           "AIRLOCK_UI__PORT": str(ports["web"]), "COLUMNS": "200",
           "AIRLOCK_WORKFLOWS_DIR": str(tmp_path / "workflows")}
    copy_workflows(tmp_path / "workflows")
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # as an older version left it: world-readable, with a world-readable database
    (state / "airlock.db").touch(mode=0o644)

    def airlock(*args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, text=True,
                              capture_output=True, timeout=timeout, input=stdin)

    try:
        up = airlock("up")
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"opa: using the one at 127.0.0.1:{services.opa_url.rsplit(':', 1)[1]}" in up.stdout
        status = {s["name"]: s for s in json.loads(airlock("status", "--json").stdout)}
        assert {n: s["state"] for n, s in status.items()} == {
            "temporal": "running", "opa": "external", "anvil": "running", "model": "running", "worker": "running",
            "ui": "running"}
        assert status["anvil"]["address"] == f"127.0.0.1:{ports['anvil']}"
        assert status["opa"]["detail"].endswith(f"bundle {policybundle.policies_revision(ROOT / 'policies')}")
        again = airlock("up")
        assert again.stdout.count("already running") == 5
        assert stack.http_ok(f"http://127.0.0.1:{ports['web']}/login")

        from tools import support

        support.reset_demo_ledger(f"sqlite:///{tmp_path / 'state' / 'airlock.db'}")
        spec = tmp_path / "workflows" / "spec.yaml"  # in the folder the worker serves
        (tmp_path / "workflows" / "turns.yaml").write_text(
            "turns:\n  - tool_calls: [{name: issue_refund, args: {order_id: A-1001, amount: '5.00', "
            "reason: scratched}}]\n  - content: done\n")
        spec.write_text("name: stack-test\nversion: 1\nmodel: {provider: scripted, script: turns.yaml}\n"
                        "system_prompt: hi\ntools: [tools.support:issue_refund]\npolicy: airlock.support_refund\n")
        added = airlock("users", "add", "alice", "--role", "support", "--password-stdin", stdin="alice-password\n")
        assert added.returncode == 0, added.stderr
        run = airlock("run", str(spec), "--input", '{"customer_id": "cus_ana"}', "--as", "alice", "--wait",
                      "--json", "--password-stdin", stdin="alice-password\n")
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        assert result["status"] == "completed" and result["tool_calls"][0]["outcome"] == "executed"

        # `up` deployed the demo token and gave the worker the treasury's keystore: the README's main job runs.
        assert "chain: demo token tUSD at 0x5FbDB2315678afecb367f032d93F642f64180aa3" in up.stdout
        demo = airlock("demo", timeout=180)
        assert demo.returncode == 0, demo.stderr + demo.stdout
        assert "treasury-payout v1): completed" in demo.stdout
        from engine.adapters.chain import Chain

        chain = Chain(f"http://127.0.0.1:{ports['anvil']}")
        token = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
        assert [chain.token_balance(token, a) // 10**6 for a in (
            "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
            "0x00000000000000000000000000000000DeaDBeef")] == [250, 4800, 0]
        assert "injected address │ 0x00000000000000000000000000000000DeaDBeef │ 0 " in demo.stdout
        assert chain.nonce("0x70997970C51812dc3A010C7d01b50e0d17dc79C8") == 2
        # Nobody else on the machine may read the state: the database, temporal.db, keys, secrets, logs.
        assert {"airlock.db", "temporal.db", "ui-secret", "keys/assertions.key", "keys/treasury.keystore.json",
                "logs/worker.log"} <= {str(p.relative_to(state)) for p in state.rglob("*")}
        readable = {str(p.relative_to(state)): oct(p.stat().st_mode & 0o777) for p in [state, *state.rglob("*")]
                    if p.stat().st_mode & 0o077}
        assert readable == {}
        pids = [s["pid"] for s in status.values() if s["pid"]]
    finally:
        down = airlock("down")
    assert down.returncode == 0
    assert "opa" not in down.stdout and "worker: stopped" in down.stdout and "ui: stopped" in down.stdout
    assert not any(stack.pid_alive(pid) for pid in pids)
    assert stack.http_ok(f"{services.opa_url}/health")  # not ours, still up
    status = {s["name"]: s["state"] for s in json.loads(airlock("status", "--json").stdout)}
    assert status == {"temporal": "stopped", "opa": "external", "anvil": "stopped", "model": "stopped",
                      "worker": "stopped", "ui": "stopped"}

    # Up again on the same state folder: the chain is where the store left it (anvil saved it on the way down),
    # so the demo pays again under the next nonces instead of re-signing the first run's transactions.
    assert (state / "anvil-state.json.new").is_file()  # saved on the way down, taken on the way up
    try:
        again = airlock("up")
        assert again.returncode == 0, again.stderr + again.stdout
        second = airlock("demo", timeout=180)
        assert second.returncode == 0, second.stderr + second.stdout
        assert [chain.token_balance(token, a) // 10**6 for a in (
            "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
            "0x00000000000000000000000000000000DeaDBeef")] == [500, 9600, 0]
        assert chain.nonce("0x70997970C51812dc3A010C7d01b50e0d17dc79C8") == 4
        refunds = airlock("demo", "--workflow", "support-refund", timeout=180)
        assert refunds.returncode == 0, refunds.stderr + refunds.stdout
        assert "ledger (support_refunds): A-1001 25.00 EUR, A-1002 180.00 EUR" in refunds.stdout
    finally:
        assert airlock("down").returncode == 0
    # anvil killed while saving: its latest save is cut off, so `up` starts from the one before (after the first
    # demo), which is behind the store (the second demo's transactions): `up` says both, stops the anvil it
    # started and starts no worker.
    latest = state / "anvil-state.json.new"
    latest.write_bytes(latest.read_bytes()[:1000])
    try:
        lost = airlock("up")
        assert lost.returncode == 1
        assert "anvil: its latest save" in lost.stdout and "is incomplete" in lost.stdout
        assert (f"the local chain at http://127.0.0.1:{ports['anvil']} is behind the store: "
                "0x70997970C51812dc3A010C7d01b50e0d17dc79C8 has sent 2 transaction(s) there, but the store records "
                "one at nonce 3 as mined") in " ".join(lost.stderr.split())
        assert "anvil: stopped" in lost.stdout and "worker: started" not in lost.stdout
        status = {s["name"]: s["state"] for s in json.loads(airlock("status", "--json").stdout)}
        assert status["anvil"] == "stopped" and status["worker"] == "stopped"
    finally:
        assert airlock("down").returncode == 0


def test_up_starts_no_chain_for_a_project_without_chain_workflows(services: Services, tmp_path: Path) -> None:
    """A project whose workflows name no chain_id gets no anvil, no demo token and no keystore; `--chain` asks
    for them all the same."""
    ports = {name: stack.free_port() for name in ("temporal", "ui", "anvil", "model", "web")}
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "scripts").mkdir()
    (workflows / "scripts" / "turns.yaml").write_text("turns:\n  - content: done\n")
    (workflows / "refunds.yaml").write_text(
        "name: refunds\nversion: 1\nmodel: {provider: scripted, script: scripts/turns.yaml}\nsystem_prompt: hi\n"
        "tools: [tools.support:lookup_order]\npolicy: airlock.support_refund\n")
    env = {**os.environ, "AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_STATE_DIR": str(tmp_path / "state"),
           "AIRLOCK_TEMPORAL__ADDRESS": f"127.0.0.1:{ports['temporal']}",
           "AIRLOCK_TEMPORAL__UI_PORT": str(ports["ui"]), "AIRLOCK_OPA__URL": services.opa_url,
           "AIRLOCK_CHAIN__RPC_URL": f"http://127.0.0.1:{ports['anvil']}",
           "AIRLOCK_LLM__SCRIPTED_URL": f"http://127.0.0.1:{ports['model']}/v1",
           "AIRLOCK_UI__PORT": str(ports["web"])}

    def airlock(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli", *args, "--workflows-dir", str(workflows)],
                              cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)

    try:
        up = airlock("up")
        assert up.returncode == 0, up.stderr + up.stdout
        assert "anvil: not started (no workflow of the project names a chain_id" in up.stdout
        # no anvil launched (its log would be there; its port may meanwhile be any other process's)
        assert "chain:" not in up.stdout and not (tmp_path / "state" / "logs" / "anvil.log").exists()
        assert not (tmp_path / "state" / "keys" / "treasury.keystore.json").exists()
        status = {s["name"]: s["state"] for s in json.loads(airlock("status", "--json").stdout)}
        assert status["anvil"] == "stopped" and status["worker"] == "running"
        with_chain = airlock("up", "--chain")
        assert with_chain.returncode == 0, with_chain.stderr + with_chain.stdout
        assert f"anvil: started at 127.0.0.1:{ports['anvil']}" in with_chain.stdout
        assert "chain: demo token tUSD at" in with_chain.stdout
    finally:
        airlock("down")
