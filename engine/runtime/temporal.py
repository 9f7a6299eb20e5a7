"""Temporal client construction, shared by the CLI, the worker and tests."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from engine.adapters.tracing import Tracing
from engine.config import OtelSettings, TemporalSettings


async def connect(settings: TemporalSettings, otel: OtelSettings | None = None) -> Client:
    """A client for the configured cluster (dev server, cluster or Temporal Cloud).

    With ``otel`` configured, the client traces what it starts (and a worker built on it traces runs).
    """
    tls: TLSConfig | bool = settings.tls
    if settings.tls and (settings.tls_ca_path or settings.tls_cert_path):
        tls = TLSConfig(
            server_root_ca_cert=settings.tls_ca_path.read_bytes() if settings.tls_ca_path else None,
            client_cert=settings.tls_cert_path.read_bytes() if settings.tls_cert_path else None,
            client_private_key=settings.tls_key_path.read_bytes() if settings.tls_key_path else None,
        )
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        tls=tls,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        data_converter=pydantic_data_converter,
        interceptors=Tracing(otel).interceptors if otel is not None else [],
    )
