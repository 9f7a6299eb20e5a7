"""How the Temporal settings reach ``Client.connect``: TLS, mTLS, a server name, an API key (from env or a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import Client, TLSConfig

from engine.config import Settings
from engine.errors import InputError
from engine.runtime import temporal


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``Client.connect`` was called with (it connects nowhere)."""
    seen: dict[str, Any] = {}

    async def fake_connect(target_host: str, **kwargs: Any) -> str:
        seen.update(kwargs, target_host=target_host)
        return "client"

    monkeypatch.setattr(Client, "connect", fake_connect)
    return seen


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(f"AIRLOCK_TEMPORAL__{name}", value)
    return Settings()


async def test_the_dev_server_is_plain(monkeypatch: pytest.MonkeyPatch, connected: dict[str, Any]) -> None:
    await temporal.connect(_settings(monkeypatch).temporal)
    assert (connected["target_host"], connected["namespace"]) == ("127.0.0.1:7233", "default")
    assert (connected["tls"], connected["api_key"]) == (False, None)


async def test_mtls_files_and_server_name_reach_connect(monkeypatch: pytest.MonkeyPatch, connected: dict[str, Any],
                                                        tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())
    settings = _settings(monkeypatch, ADDRESS="temporal.internal:7233", NAMESPACE="airlock-prod",
                         TLS_CA_PATH=str(tmp_path / "ca.pem"), TLS_CERT_PATH=str(tmp_path / "client.pem"),
                         TLS_KEY_PATH=str(tmp_path / "client.key"), TLS_SERVER_NAME="temporal.example.com")
    await temporal.connect(settings.temporal)
    assert (connected["target_host"], connected["namespace"]) == ("temporal.internal:7233", "airlock-prod")
    assert connected["tls"] == TLSConfig(server_root_ca_cert=b"-- ca.pem --", client_cert=b"-- client.pem --",
                                         client_private_key=b"-- client.key --", domain="temporal.example.com")
    assert connected["api_key"] is None


async def test_an_api_key_turns_tls_on(monkeypatch: pytest.MonkeyPatch, connected: dict[str, Any],
                                       tmp_path: Path) -> None:
    await temporal.connect(_settings(monkeypatch, ADDRESS="eu-west-1.aws.api.temporal.io:7233",
                                     API_KEY="tk-from-env").temporal)
    assert (connected["tls"], connected["api_key"]) == (True, "tk-from-env")
    (tmp_path / "api-key").write_text("tk-from-a-file\n")  # a compose or Kubernetes secret
    monkeypatch.delenv("AIRLOCK_TEMPORAL__API_KEY")
    await temporal.connect(_settings(monkeypatch, API_KEY_FILE=str(tmp_path / "api-key")).temporal)
    assert (connected["tls"], connected["api_key"]) == (True, "tk-from-a-file")


async def test_tls_on_its_own_uses_the_system_roots(monkeypatch: pytest.MonkeyPatch,
                                                    connected: dict[str, Any]) -> None:
    await temporal.connect(_settings(monkeypatch, TLS="true").temporal)
    assert connected["tls"] is True


async def test_a_missing_file_names_its_setting(monkeypatch: pytest.MonkeyPatch, connected: dict[str, Any],
                                                tmp_path: Path) -> None:
    settings = _settings(monkeypatch, API_KEY_FILE=str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match=r"AIRLOCK_TEMPORAL__API_KEY_FILE: cannot read .*nowhere"):
        await temporal.connect(settings.temporal)
    assert connected == {}


@pytest.mark.parametrize(("env", "message"), [
    ({"TLS_CERT_PATH": "/c.pem"}, "TLS_CERT_PATH and AIRLOCK_TEMPORAL__TLS_KEY_PATH go together"),
    ({"TLS": "false", "TLS_CA_PATH": "/ca.pem"}, "the connection left unencrypted"),
    ({"TLS": "false", "API_KEY": "k", "ADDRESS": "temporal.example:7233"}, "an API key is set: it would cross"),
])
def test_settings_that_contradict_each_other_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                         message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(monkeypatch, **env)


async def test_a_key_without_tls_only_to_loopback(monkeypatch: pytest.MonkeyPatch, connected: dict[str, Any]) -> None:
    """A TLS-terminating sidecar on the same host: a key over loopback without TLS is allowed."""
    settings = _settings(monkeypatch, TLS="false", API_KEY="k", ADDRESS="127.0.0.1:7233")
    assert not settings.temporal.uses_tls
