"""Temporal client construction, shared by the CLI, the worker and tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from engine.adapters.tracing import Tracing
from engine.config import OtelSettings, TemporalSettings
from engine.errors import InputError


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"AIRLOCK_TEMPORAL__{setting}: cannot read {path}: {exc.strerror}") from None


def connection_options(settings: TemporalSettings) -> dict[str, Any]:
    """The ``tls`` and ``api_key`` arguments of ``Client.connect``, with the files the settings name read.

    Raises:
        InputError: a file cannot be read (named with its setting).
    """
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    if api_key is None and settings.api_key_file is not None:
        api_key = _read(settings.api_key_file, "API_KEY_FILE").decode().strip()
    tls: TLSConfig | bool = settings.uses_tls
    if tls and (settings.tls_ca_path or settings.tls_cert_path or settings.tls_server_name):
        tls = TLSConfig(
            server_root_ca_cert=_read(settings.tls_ca_path, "TLS_CA_PATH") if settings.tls_ca_path else None,
            client_cert=_read(settings.tls_cert_path, "TLS_CERT_PATH") if settings.tls_cert_path else None,
            client_private_key=_read(settings.tls_key_path, "TLS_KEY_PATH") if settings.tls_key_path else None,
            domain=settings.tls_server_name,
        )
    return {"tls": tls, "api_key": api_key}


async def connect(settings: TemporalSettings, otel: OtelSettings | None = None) -> Client:
    """A client for the configured cluster (dev server, cluster or Temporal Cloud).

    With ``otel`` configured, the client traces what it starts (and a worker built on it traces runs).

    Raises:
        InputError: a TLS or API key file cannot be read.
    """
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        data_converter=pydantic_data_converter,
        interceptors=Tracing(otel).interceptors if otel is not None else [],
        **connection_options(settings),
    )
