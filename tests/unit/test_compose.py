"""temporal-dev.yml describes the same stack as `airlock up`; deploy/production.yml the production topology
(docs/production.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from engine.config import Settings
from tests.helpers import ROOT

COMPOSE = ROOT / "temporal-dev.yml"
PRODUCTION = ROOT / "deploy" / "production.yml"


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
@pytest.mark.parametrize("compose_file", [COMPOSE, PRODUCTION], ids=["temporal-dev", "production"])
def test_docker_compose_config_accepts_file(compose_file: Path) -> None:
    result = subprocess.run([*(compose_command() or []), "-f", str(compose_file), "config", "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _secret_settings(model: type[BaseModel] = Settings, prefix: str = "AIRLOCK_") -> set[str]:
    """Every setting that holds a secret: its value must never be written into a compose or env file."""
    found = {"AIRLOCK_DATABASE_URL"} if model is Settings else set()  # the URL carries the password
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= _secret_settings(annotation, f"{prefix}{name.upper()}__")
        elif SecretStr in getattr(annotation, "__args__", (annotation,)):
            found.add(f"{prefix}{name.upper()}")
    return found


@pytest.fixture(scope="module")
def production() -> dict[str, Any]:
    return yaml.safe_load(PRODUCTION.read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env_files = [PRODUCTION.parent / f for f in service.get("env_file", [])]
    env = dict(line.split("=", 1) for f in env_files for line in f.read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    return {**env, **{k: str(v) for k, v in (service.get("environment") or {}).items()}}


def test_production_runs_two_workers_each_with_an_opa_sidecar(production: dict[str, Any]) -> None:
    services = production["services"]
    workers = sorted(n for n, s in services.items() if s.get("command") == ["airlock", "worker"])
    uis = sorted(n for n, s in services.items() if s.get("command") == ["airlock", "ui"])
    assert workers == ["worker-1", "worker-2"] and uis == ["ui-1", "ui-2"]
    assert "temporal" not in services  # a cluster or Temporal Cloud, named by the env file
    for name in workers + uis:
        env = _env(services[name])
        assert env["AIRLOCK_TEMPORAL__ADDRESS"] and env["AIRLOCK_TEMPORAL__NAMESPACE"]
        assert env["AIRLOCK_TEMPORAL__TLS_CERT_PATH"].startswith("/run/secrets/")
        assert env["AIRLOCK_OPA__URL"] == "http://127.0.0.1:8181"
        [sidecar] = [s for s in services.values() if s.get("network_mode") == f"service:{name}"]
        assert sidecar["image"] == "openpolicyagent/opa:1.22.3" and "--authorization=basic" in sidecar["command"]
        assert sidecar["command"][sidecar["command"].index("--addr") + 1] == "127.0.0.1:8181"  # its process only
        assert "bundle-server" in sidecar["depends_on"]
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    # Sidecars pull signed bundles from the bundle server, never a folder.
    opa = yaml.safe_load((PRODUCTION.parent / "opa" / "config.yaml").read_text())
    bundle = opa["bundles"]["airlock"]
    assert opa["services"][bundle["service"]]["url"] == "http://bundle-server"
    assert bundle["signing"]["keyid"] in opa["keys"]
    assert "./bundles:/usr/share/nginx/html/bundles:ro" in services["bundle-server"]["volumes"]


def test_production_shares_what_ui_instances_must_share(production: dict[str, Any]) -> None:
    services = production["services"]
    uis, workers = [services["ui-1"], services["ui-2"]], [services["worker-1"], services["worker-2"]]
    for ui in uis:
        env = _env(ui)
        assert env["AIRLOCK_UI__SECRET_KEY_FILE"] == "/run/secrets/session_secret"
        assert env["AIRLOCK_AUTH__SIGNING_KEY_FILE"] == "/run/secrets/assertion_signing_key"
        assert env["AIRLOCK_DATABASE_URL_FILE"] == "/run/secrets/database_url"
        # X-Forwarded-For is taken from the proxy alone
        assert env["AIRLOCK_UI__TRUSTED_PROXIES"] == f'["{services["proxy"]["networks"]["edge"]["ipv4_address"]}"]'
    for worker in workers:  # workers verify people's assertions; they never hold the key that signs them
        assert "assertion_signing_key" not in worker["secrets"] and "assertion_verify_key" in worker["secrets"]
        assert "session_secret" not in worker["secrets"]
    upstream = re.search(r"upstream airlock_ui \{([^}]*)\}", (PRODUCTION.parent / "proxy" / "nginx.conf").read_text())
    assert upstream and re.findall(r"server (ui-\d):8700", upstream.group(1)) == ["ui-1", "ui-2"]


def test_production_holds_no_secret_values(production: dict[str, Any]) -> None:
    secret_settings = _secret_settings()
    assert {"AIRLOCK_UI__SECRET_KEY", "AIRLOCK_AUTH__SIGNING_KEY", "AIRLOCK_TEMPORAL__API_KEY"} <= secret_settings
    for name, service in production["services"].items():
        env = _env(service)
        assert not secret_settings & set(env), f"{name} is given a secret's value; give its _FILE instead"
        assert "POSTGRES_PASSWORD" not in env
        for secret in service.get("secrets", []):
            assert production["secrets"][secret]["file"] == f"./secrets/{secret}"
        for value in env.values():
            assert "://" not in value or "@" not in value  # no credentials in a URL
    ignored = (PRODUCTION.parent / ".gitignore").read_text().split()
    assert "secrets/" in ignored
