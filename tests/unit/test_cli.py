"""CLI input handling: bad input exits 2 and starts nothing (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from tests.helpers import ROOT

runner = CliRunner()
# A Temporal address nothing listens on: a command that tried to start a run would fail with 1, not 2.
ENV = {"AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_TEMPORAL__ADDRESS": "127.0.0.1:1"}


def test_validate_ok_for_shipped_workflows() -> None:
    result = runner.invoke(app, ["validate", str(ROOT / "workflows/support_refund.yaml"),
                                 str(ROOT / "workflows/support_refund_strict.py")], env=ENV)
    assert result.exit_code == 0, result.output
    assert "ok (support-refund v1, 5 tools)" in result.output


def test_validate_reports_every_problem_with_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\nmodel: {provider: scripted, script: nope.yaml}\nsystem_prompt: hi\n"
                   "tools: [tools.support:nothing]\npolicy: airlock.x\nextra: 1\n")
    result = runner.invoke(app, ["validate", str(bad)], env=ENV)
    assert result.exit_code == 2
    assert f"{bad}:7: extra: unknown key" in result.output


def test_validate_reports_resolution_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\nmodel: {provider: scripted, script: nope.yaml}\nsystem_prompt: hi\n"
                   "tools: [tools.support:nothing]\npolicy: airlock.x\n")
    result = runner.invoke(app, ["validate", str(bad)], env=ENV)
    assert result.exit_code == 2
    assert f"{bad}:3: model.script: script file" in result.output
    assert f"{bad}:5: tools[0]: module 'tools.support' has no function 'nothing'" in result.output


def test_run_with_malformed_input_exits_2() -> None:
    result = runner.invoke(app, ["run", str(ROOT / "workflows/support_refund.yaml"), "--as", "alice",
                                 "--input", '{"customer_id": '], env=ENV)
    assert result.exit_code == 2
    assert "--input:1:17: not valid JSON: Expecting value" in result.output


def test_run_with_non_object_input_exits_2() -> None:
    result = runner.invoke(app, ["run", str(ROOT / "workflows/support_refund.yaml"), "--as", "alice",
                                 "--input", "[1, 2]"], env=ENV)
    assert result.exit_code == 2 and "must be a JSON object, got list" in result.output


def test_run_with_missing_input_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(ROOT / "workflows/support_refund.yaml"), "--as", "alice",
                                 "--input", f"@{tmp_path / 'none.json'}"], env=ENV)
    assert result.exit_code == 2 and "no such file" in result.output


def test_run_with_bad_spec_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    result = runner.invoke(app, ["run", str(bad), "--as", "alice"], env=ENV)
    assert result.exit_code == 2 and f"{bad}:" in result.output and "(yaml)" in result.output


def _with_alice(tmp_path: Path) -> dict[str, str]:
    """ENV with a fresh state folder whose user store has alice (password ``alice-password``)."""
    env = {**ENV, "AIRLOCK_STATE_DIR": str(tmp_path / "state")}
    added = runner.invoke(app, ["users", "add", "alice", "--role", "support", "--password-stdin"], env=env,
                          input="alice-password\n")
    assert added.exit_code == 0, added.output
    return env


def test_run_when_temporal_is_down_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(ROOT / "workflows/support_refund.yaml"), "--as", "alice",
                                 "--password-stdin"], env=_with_alice(tmp_path), input="alice-password\n")
    assert result.exit_code == 1 and "cannot reach Temporal at 127.0.0.1:1" in result.output


def test_run_as_someone_needs_their_password(tmp_path: Path) -> None:
    env = _with_alice(tmp_path)
    no_password = runner.invoke(app, ["run", "support_refund", "--as", "alice"], env=env)
    assert no_password.exit_code == 2 and "--as alice: give the password with --password-stdin" in no_password.output
    wrong = runner.invoke(app, ["run", "support_refund", "--as", "alice", "--password-stdin"], env=env,
                          input="not-her-password\n")
    assert wrong.exit_code == 1 and "--as alice: wrong user name or password" in wrong.output
    ghost = runner.invoke(app, ["run", "support_refund", "--as", "ghost-of-bob", "--password-stdin"], env=env,
                          input="anything-at-all\n")
    assert ghost.exit_code == 1 and "--as ghost-of-bob: wrong user name or password" in ghost.output
    other_tenant = runner.invoke(app, ["run", "support_refund", "--as", "alice", "--password-stdin", "--tenant",
                                       "acme"], env=env, input="alice-password\n")
    assert other_tenant.exit_code == 2 and "alice does not belong to tenant 'acme'" in other_tenant.output


def test_run_finds_a_bare_workflow_name_in_workflows_dir() -> None:
    result = runner.invoke(app, ["run", "support_refund", "--as", "alice", "--input", "nope"], env=ENV)
    assert result.exit_code == 2 and "--input:1:1: not valid JSON" in result.output
    missing = runner.invoke(app, ["run", "no_such_workflow", "--as", "alice"], env=ENV)
    assert missing.exit_code == 2 and "no workflow named 'no_such_workflow'" in missing.output


def test_deciding_as_someone_needs_their_password(tmp_path: Path) -> None:
    env = _with_alice(tmp_path)
    rejected = runner.invoke(app, ["reject", "apr_0123456789ab", "--as", "alice", "--reason", "no"], env=env)
    assert rejected.exit_code == 2 and "--as alice: give the password with --password-stdin" in rejected.output
    approved = runner.invoke(app, ["approve", "apr_0123456789ab", "--as", "alice"], env=env)
    assert approved.exit_code == 2 and "--as alice: give the password with --password-stdin" in approved.output


SIGNING = "AIRLOCK_AUTH__SIGNING_KEY: the assertion signing key is not an unencrypted PEM private key"


@pytest.mark.parametrize("command, setting, message", [  # the UI signs; workers verify and hold the chain key
    ("worker", "AIRLOCK_AUTH__SIGNING_KEY", SIGNING), ("ui", "AIRLOCK_AUTH__SIGNING_KEY", SIGNING),
    ("worker", "AIRLOCK_AUTH__VERIFY_KEY",
     "AIRLOCK_AUTH__VERIFY_KEY: the assertion verify key is not a PEM public key"),
    ("worker", "AIRLOCK_CHAIN__SIGNER_KEY",
     "AIRLOCK_CHAIN__SIGNER_KEY: the chain signing key is not a valid private key"),
])
def test_a_malformed_key_is_a_located_error_before_anything_connects(tmp_path: Path, command: str, setting: str,
                                                                    message: str) -> None:
    env = {**ENV, setting: "-----BEGIN PRIVATE KEY-----\nnot a key [red]\n-----END PRIVATE KEY-----",
           "AIRLOCK_STATE_DIR": str(tmp_path), "AIRLOCK_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    result = runner.invoke(app, [command], env=env)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and "not a key" not in result.output


def test_an_api_url_that_is_not_airlock_is_a_clear_error(tmp_path: Path) -> None:
    import http.server
    import threading

    class NotAirlock(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>a login page</html>" if "approvals" in self.path else b"[1, 2]"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotAirlock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**ENV, "AIRLOCK_API__URL": f"http://127.0.0.1:{server.server_port}", "AIRLOCK_API__TOKEN": "alk_x"}
        result = runner.invoke(app, ["approvals", "list"], env=env)
    finally:
        server.shutdown()
    assert result.exit_code == 1 and "did not answer with the Airlock API's JSON" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_global_options_are_taken_wherever_they_are_typed(tmp_path: Path) -> None:
    """`airlock run NAME --project-dir X` means `airlock --project-dir X run NAME`: the project's workflows are
    the ones looked in (nothing listens at the Temporal address, so a found workflow fails later, with 1)."""
    env = {"AIRLOCK_TEMPORAL__ADDRESS": "127.0.0.1:1"}  # no AIRLOCK_PROJECT_DIR: the option must carry it
    for args in (["run", "support-refund", "--project-dir", str(ROOT)],
                 ["run", f"--project-dir={ROOT}", "support-refund"],
                 ["--project-dir", str(ROOT), "run", "support-refund"]):
        result = runner.invoke(app, [*args, "--as", "alice", "--input", "{"], env=env)
        assert result.exit_code == 2 and "--input:1:2: not valid JSON" in result.output, (args, result.output)
    elsewhere = runner.invoke(app, ["run", "support-refund", "--project-dir", str(tmp_path), "--as", "alice"],
                              env=env)
    assert elsewhere.exit_code == 2 and f"no workflow named 'support-refund' in {tmp_path / 'workflows'}" in (
        elsewhere.output.replace("\n", ""))


def test_nothing_after_a_double_dash_is_taken_for_a_global_option() -> None:
    from engine.cli._app import hoist_global_options

    assert hoist_global_options(["up", "--project-dir", "x", "--", "--tools-dir", "y"]) == [
        "--project-dir", "x", "up", "--", "--tools-dir", "y"]


def test_run_takes_a_workflows_name_or_its_file_and_lists_what_exists_otherwise() -> None:
    by_name = runner.invoke(app, ["run", "treasury-payout", "--as", "alice", "--input", "[1]"], env=ENV)
    by_file = runner.invoke(app, ["run", "treasury_payout", "--as", "alice", "--input", "[1]"], env=ENV)
    for result in (by_name, by_file):
        assert result.exit_code == 2 and "must be a JSON object, got list" in result.output, result.output
    unknown = runner.invoke(app, ["run", "agentdojo-banking", "--as", "alice"], env=ENV)
    said = unknown.output.replace("\n", "")
    assert unknown.exit_code == 2 and "no workflow named 'agentdojo-banking'" in said
    assert "treasury-payout (treasury_payout.yaml)" in said
    assert "support-refund-strict (support_refund_strict.py)" in said
    missing_file = runner.invoke(app, ["run", "workflows/nothing.yaml", "--as", "alice"], env=ENV)
    assert missing_file.exit_code == 2 and "nothing.yaml" in missing_file.output


def test_output_into_a_pipe_is_not_wrapped(tmp_path: Path) -> None:
    """A path longer than any terminal stays on one line when the output goes to a pipe (grep, scripts)."""
    import os
    import shutil
    import subprocess
    import sys

    folder = tmp_path / ("a-rather-long-folder-name-" * 4)
    shutil.copytree(ROOT / "workflows", folder)
    deep = folder / "support_refund.yaml"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"AIRLOCK_PROJECT_DIR": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(deep)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{deep}: ok (support-refund v1, 5 tools)"]


def test_validate_as_json_reports_every_file(tmp_path: Path) -> None:
    import json

    missing = tmp_path / "nope.yaml"
    result = runner.invoke(app, ["validate", str(ROOT / "workflows/treasury_payout.yaml"), str(missing), "--json"],
                           env=ENV)
    assert result.exit_code == 2
    good, bad = json.loads(result.stdout)
    assert good["ok"] and good["name"] == "treasury-payout" and "transfer_token" in good["tools"]
    assert bad == {"path": str(missing), "ok": False, "problems": [f"{missing}:1: (file): no such file"]}


def test_keys_as_json_names_both_files_and_the_private_one_stays_private(tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "--json"], env={**ENV, "AIRLOCK_STATE_DIR": str(tmp_path / "state")})
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)
    private, public = Path(files["private_key_file"]), Path(files["public_key_file"])
    assert private.is_file() and public.is_file() and private.parent == tmp_path / "state" / "keys"
    assert private.read_bytes() not in result.stdout.encode()
    assert private.stat().st_mode & 0o077 == 0


def test_db_upgrade_as_json_names_the_database_without_its_password(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    result = runner.invoke(app, ["db", "upgrade", "--json"], env={**ENV, "AIRLOCK_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"database": url, "up_to_date": True}
    assert (tmp_path / "a.db").stat().st_size > 0


def test_init_says_why_a_folder_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    result = runner.invoke(app, ["init", str(tmp_path / "a-file" / "shop")], env=ENV)
    assert result.exit_code == 2, result.output
    assert "cannot write the project" in result.output and "a-file" in result.output


def test_the_demos_headings_stay_short_into_a_pipe() -> None:
    """Into a pipe the console never wraps (it is 100,000 columns wide): a heading's rule must not fill that."""
    import io

    from rich.console import Console

    from engine.cli._app import UNWRAPPED
    from engine.local.demo import RULE_WIDTH, _rule

    piped = Console(width=UNWRAPPED, file=io.StringIO(), force_terminal=False)
    _rule(piped, "2. the run")
    lines = piped.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines and "2. the run" in lines[0] and max(len(line) for line in lines) <= RULE_WIDTH


def test_ui_serves_with_a_bounded_recursion_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """web3's py_ecc raises the limit to 100000 on import: a parser going that deep overflows the C stack (the
    process dies). `airlock ui` puts a bound back before it serves."""
    import sys

    import uvicorn

    import engine.adapters.chain  # noqa: F401 - imports web3, which raises the limit

    assert sys.getrecursionlimit() >= 100_000
    limits: list[int] = []
    served: list[int] = []
    monkeypatch.setattr(sys, "setrecursionlimit", limits.append)  # recorded, not applied to this test process
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(len(limits)))
    result = runner.invoke(app, ["ui"], env={**ENV, "AIRLOCK_STATE_DIR": str(tmp_path / "state")})
    assert result.exit_code == 0, result.output
    assert limits == [10_000] and served == [1]  # set once, before serving
