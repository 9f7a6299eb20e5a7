"""OPA adapter: the only importer of ``opa_client``; fails closed.

A decision comes with the revision of the policy that made it: a hash of the
source of every module OPA serves for the package, read before and after the
query so a reload in between cannot be misattributed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any
from urllib.parse import urlparse

import aiohttp
from opa_client import AsyncOpaClient
from opa_client.errors import ConnectionsError, PolicyNotFoundError, QueryExecuteError

from engine.boundary import normalize_decision, unavailable_decision
from engine.config import OpaSettings
from engine.models import PolicyDecision

_OPA_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionsError, QueryExecuteError,
               PolicyNotFoundError, OSError, ValueError, KeyError)


class PolicyEngine:
    """Asks OPA for one decision per proposed tool call."""

    def __init__(self, settings: OpaSettings) -> None:
        url = urlparse(settings.url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if url.scheme == "https" else 8181)
        self._ssl = url.scheme == "https"
        self._token = settings.token.get_secret_value() if settings.token else None
        self._timeout = settings.timeout_s
        self._rule = settings.rule

    def _client(self) -> AsyncOpaClient:
        return AsyncOpaClient(host=self._host, port=self._port, ssl=self._ssl, token=self._token,
                              retries=2, timeout=self._timeout)

    async def decide(self, package: str, document: dict[str, Any]) -> tuple[PolicyDecision, Any, float]:
        """Return (decision, raw OPA result, latency ms). Never raises for OPA trouble."""
        started = time.perf_counter()
        try:
            async with self._client() as client:
                for _ in range(3):
                    before = await self._revision(client, package)
                    answer = await client.query_rule(document, package, self._rule)
                    after = await self._revision(client, package)
                    if before == after:
                        break
                else:
                    raise ValueError("policy kept changing while it was queried")
        except _OPA_ERRORS as exc:
            detail = f"OPA at {self._host}:{self._port} failed: {type(exc).__name__}: {exc}"
            return unavailable_decision(detail), None, _ms(started)
        raw = answer.get("result")
        if after is None:
            return unavailable_decision(f"no policy module declares package {package}"), raw, _ms(started)
        return normalize_decision(raw, after), raw, _ms(started)

    async def _revision(self, client: AsyncOpaClient, package: str) -> str | None:
        wanted = "/v1/data/" + package.replace(".", "/")
        info = await client.get_policies_info()
        ids = sorted(pid for pid, meta in info.items() if meta["path"].endswith(wanted))
        if not ids:
            return None
        digest = hashlib.sha256()
        for pid in ids:
            policy = await client.get_policy(pid.lstrip("/"))
            digest.update(policy["result"]["raw"].encode())
        return "sha256:" + digest.hexdigest()[:16]

    async def labels(self) -> dict[str, str]:
        """Display names the policy data knows (``data.airlock.labels``: value → label); {} if none."""
        try:
            async with self._client() as client:
                body = await client.get_data("airlock/labels")
        except _OPA_ERRORS:
            return {}
        result = body.get("result")
        return {str(k).lower(): str(v) for k, v in result.items()} if isinstance(result, dict) else {}

    async def healthy(self) -> bool:
        """Whether OPA answers its health check."""
        try:
            async with self._client() as client:
                return bool(await client.check_health())
        except _OPA_ERRORS:
            return False


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
