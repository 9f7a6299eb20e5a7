"""The production policy path (docs/production.md, "Policy bundles"): CI stages and signs a bundle, a bundle
server publishes it, and an OPA sidecar started as deploy/production.yml starts it pulls it, verifies it and
decides with it; a bundle signed with another key is never activated (real OPA)."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.boundary import bundle as policybundle
from engine.boundary.policy import OpaPolicy
from engine.config import OpaSettings
from engine.local import processes as stack
from tests.helpers import ROOT

pytestmark = pytest.mark.integration
DEPLOY = ROOT / "deploy"


def _key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """CI's two steps (stage with the engine, sign with ``opa build``) and a bundle server: its URL, the
    bundle's revision, and the folder with the signing key pair."""
    base = tmp_path_factory.mktemp("signed-bundle")
    signing_key, _ = _key_pair(base, "ci")
    revision = policybundle.stage(ROOT / "policies", base / "staged")
    (base / "www" / "bundles").mkdir(parents=True)
    subprocess.run([stack.find_binary("opa"), "build", "--bundle", ".", "--revision", revision,
                    "--signing-key", str(signing_key), "--signing-alg", "RS256",
                    "--output", str(base / "www" / "bundles" / "airlock.tar.gz")],
                   cwd=base / "staged", check=True, capture_output=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(base / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", revision, base
    finally:
        server.shutdown()


def _sidecar(bundle_server: str, verify_key: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """OPA with the sidecar's own command from deploy/production.yml, on a free port and with the files here."""
    command = yaml.safe_load((DEPLOY / "production.yml").read_text())["x-opa"]["command"]
    port = stack.free_port()
    replaced = {"127.0.0.1:8181": f"127.0.0.1:{port}", "/config/opa.yaml": str(DEPLOY / "opa" / "config.yaml"),
                "keys.airlock_ci.key=/run/secrets/bundle_verify_key": f"keys.airlock_ci.key={verify_key}"}
    args = [replaced.get(arg, arg) for arg in command]
    assert args != command and len(args) == len(command)
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([stack.find_binary("opa"), *args, "--set", f"services.bundles.url={bundle_server}"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=stack.die_with_parent)
    return proc, f"http://127.0.0.1:{port}"


async def test_the_sidecar_decides_with_the_signed_bundle_it_pulled(published: tuple[str, str, Path]) -> None:
    server, revision, keys = published
    proc, url = _sidecar(server, keys / "ci.pub", keys / "opa.log")
    try:
        stack.wait_until(lambda: stack.http_ok(f"{url}/health?bundles"), "opa (bundle activated)", proc, 30,
                         keys / "opa.log")
        assert await OpaPolicy(OpaSettings(url=url)).revision() == revision
        async with aiohttp.ClientSession() as http, \
                http.put(f"{url}/v1/policies/airlock", data="package airlock\n") as response:
            assert response.status in (401, 403)  # nothing is written into it through its API
    finally:
        stack.stop_process(proc)


def test_a_bundle_signed_with_another_key_is_never_activated(published: tuple[str, str, Path]) -> None:
    server, _, keys = published
    _, other = _key_pair(keys, "other")
    log = keys / "opa-other.log"
    proc, url = _sidecar(server, other, log)
    try:
        stack.wait_until(lambda: "verification error" in log.read_text(errors="replace"), "opa refusing the bundle",
                         proc, 30, log)
        time.sleep(0.2)
        assert not stack.http_ok(f"{url}/health?bundles")
    finally:
        stack.stop_process(proc)
