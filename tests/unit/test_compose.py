"""temporal-dev.yml describes the same stack as `airlock up`."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.helpers import ROOT

COMPOSE = ROOT / "temporal-dev.yml"


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (Debian's v1), whichever is here."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_has_the_stack() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert set(services) == {"temporal", "policy-bundle", "opa", "anvil", "postgres", "model", "worker"}
    assert services["opa"]["image"] == "openpolicyagent/opa:1.22.3"
    # OPA serves the bundle staged from policies/ and refuses writes; it never reads policies/ itself.
    assert "./policies:/policies:ro" in services["policy-bundle"]["volumes"]
    assert "--authorization=basic" in services["opa"]["command"] and "--watch" not in services["opa"]["command"]
    assert services["opa"]["command"][-2:] == ["--bundle", "/bundle"]
    ports = {p.split(":", 1)[1] for s in services.values() for p in s.get("ports", [])}
    assert {"7233:7233", "8181:8181", "8545:8545", "8600:8600", "5432:5432"} <= ports
    assert services["worker"]["environment"]["AIRLOCK_TEMPORAL__ADDRESS"] == "temporal:7233"
    # The worker verifies people's assertions with the host's public key only (`airlock keys` makes the pair).
    assert services["worker"]["environment"]["AIRLOCK_AUTH__VERIFY_KEY_FILE"] == "/keys/assertions.pub"
    assert "./.airlock/keys/assertions.pub:/keys/assertions.pub:ro" in services["worker"]["volumes"]
    assert not any("assertions.key" in v for s in services.values() for v in s.get("volumes", []))


@pytest.mark.skipif(compose_command() is None, reason="no docker compose client here (.ci/run installs one)")
def test_docker_compose_config_accepts_file() -> None:
    result = subprocess.run([*(compose_command() or []), "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
