"""The local OPA serves an immutable bundle: writes through its REST API are refused, and the revision
recorded with every decision is the served bundle's, covering Rego modules and data alike (real OPA)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from engine.boundary import bundle as policybundle
from engine.boundary.policy import OpaPolicy
from engine.config import OpaSettings
from engine.local import processes as stack
from tests.helpers import ROOT, payment_facts

pytestmark = pytest.mark.integration
PACKAGE = "airlock.treasury_payout"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
STRANGER = "0x000000000000000000000000000000000000bEEF"
ALLOW_EVERYTHING = 'package airlock.treasury_payout\nimport rego.v1\ndecision := {"allow": true}\n'


def payment(to: str) -> dict:
    """A 90 tUSD transfer to ``to`` that the user asked for, with facts that hold (the payee list decides)."""
    typed = {"sources": [{"from": "user", "field": "input.message", "trusted": True, "context": "pay 90"}],
             "trusted": True}
    return {
        "tool": {"name": "transfer_token", "consequential": True,
                 "args": {"chain_id": 31337, "token": TOKEN, "to": to, "amount": "90"}},
        "facts": payment_facts(to, "90"),
        "provenance": {"to": typed, "amount": typed},
    }


@contextmanager
def serving(policies: Path, run_dir: Path) -> Iterator[str]:
    """An OPA started as `airlock up` starts it, serving a bundle built from ``policies``."""
    port = stack.free_port()
    proc = stack.launch_opa(port, policies, run_dir / "opa.log", tethered=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stack.stop_process(proc)


def _manifest(bundle: Path) -> dict:
    with tarfile.open(bundle) as tar:
        members = {m.name.lstrip("/"): m for m in tar.getmembers()}
        assert not [name for name in members if name.endswith("_test.rego")], "Rego tests stay out of the bundle"
        return json.load(tar.extractfile(members[".manifest"]))  # type: ignore[arg-type]


def _copy_policies(target: Path, **data_patch: dict) -> Path:
    shutil.copytree(ROOT / "policies", target)
    data = json.loads((target / "data.json").read_text())
    for key, value in data_patch.items():
        data["airlock"][key] = {**data["airlock"].get(key, {}), **value}
    (target / "data.json").write_text(json.dumps(data, indent=2))
    return target


async def test_writes_through_the_rest_api_are_refused(tmp_path: Path) -> None:
    with serving(ROOT / "policies", tmp_path) as url:
        opa = OpaPolicy(OpaSettings(url=url))
        before, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
        async with aiohttp.ClientSession() as http:
            add_payee = await http.put(f"{url}/v1/data/airlock/treasury/payees/{STRANGER}", json="Mallory Ltd")
            new_policy = await http.put(f"{url}/v1/policies/x", data=ALLOW_EVERYTHING,
                                        headers={"Content-Type": "text/plain"})
            drop_payees = await http.delete(f"{url}/v1/data/airlock/treasury/payees")
            patch = await http.patch(f"{url}/v1/data", json=[{"op": "add", "path": "/evil", "value": 1}])
            payees = await (await http.get(f"{url}/v1/data/airlock/treasury/payees")).json()
        after, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
    assert [r.status for r in (add_payee, new_policy, drop_payees, patch)] == [401, 401, 401, 401]
    assert STRANGER not in payees["result"] and len(payees["result"]) == 2
    assert before.outcome == after.outcome == "deny"
    assert any("not on the payee list" in reason for reason in after.reasons)
    assert after.reasons == before.reasons and after.revision == before.revision
    manifest = _manifest(tmp_path / "policy-bundle.tar.gz")
    assert manifest["roots"] == ["airlock", "system/authz"]  # OPA itself refuses writes under them too
    assert manifest["revision"] == before.revision == policybundle.policies_revision(ROOT / "policies")


async def test_revision_covers_data_and_is_the_served_bundles(tmp_path: Path) -> None:
    plain = _copy_policies(tmp_path / "plain")
    more_payees = _copy_policies(tmp_path / "more", treasury={"payees": {
        **json.loads((ROOT / "policies" / "data.json").read_text())["airlock"]["treasury"]["payees"],
        STRANGER: "Beef Supplies"}})
    seen = {}
    for folder in (plain, more_payees):
        run_dir = tmp_path / f"run-{folder.name}"
        with serving(folder, run_dir) as url:
            opa = OpaPolicy(OpaSettings(url=url))
            decision, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
            served = await opa.revision()
        assert decision.revision == served == _manifest(run_dir / "policy-bundle.tar.gz")["revision"]
        assert served == policybundle.policies_revision(folder)
        seen[folder.name] = decision
    assert (plain / "treasury_payout.rego").read_bytes() == (more_payees / "treasury_payout.rego").read_bytes()
    assert seen["plain"].outcome == "deny" and seen["more"].outcome == "allow"
    assert seen["plain"].revision != seen["more"].revision


async def test_package_no_module_declares_is_denied(tmp_path: Path) -> None:
    # A data document at the decision's path is not a policy: it must not decide.
    folder = _copy_policies(tmp_path / "p", shadow={"decision": {"allow": True, "reasons": ["from data"]}})
    with serving(folder, tmp_path) as url:
        opa = OpaPolicy(OpaSettings(url=url))
        served = await opa.revision()
        for package in ("airlock.nobody", "airlock.shadow"):
            decision, _, _ = await opa.evaluate(package, payment(STRANGER))
            assert decision.outcome == "deny" and decision.revision == served
            assert decision.reasons == ["policy unavailable", f"no policy module declares package {package}"]
        declared, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
    assert "policy unavailable" not in declared.reasons and declared.revision == served


async def test_opa_serving_no_bundle_is_denied(tmp_path: Path) -> None:
    port = stack.free_port()
    log = open(tmp_path / "opa.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([stack.find_binary("opa"), "run", "--server", "--addr", f"127.0.0.1:{port}",
                             str(ROOT / "policies" / "treasury_payout.rego"), str(ROOT / "policies" / "envelope.rego"),
                             str(ROOT / "policies" / "lib" / "provenance.rego"), str(ROOT / "policies" / "data.json")],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=stack.die_with_parent,
                            start_new_session=True)
    try:
        stack.wait_until(lambda: stack.http_ok(f"http://127.0.0.1:{port}/health"), "opa", proc, 30)
        opa = OpaPolicy(OpaSettings(url=f"http://127.0.0.1:{port}"))
        decision, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
        assert await opa.revision() is None
    finally:
        stack.stop_process(proc)
        log.close()
    assert decision.outcome == "deny" and decision.revision is None
    assert decision.reasons == ["policy unavailable",
                                f"OPA at 127.0.0.1:{port} serves no policy bundle with a revision"]
