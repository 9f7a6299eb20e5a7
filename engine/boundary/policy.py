"""OPA adapter: the only importer of ``opa_client``; fails closed.

A decision comes with the revision of the policy bundle that made it, read
with the query itself (OPA's ``provenance``): the bundle holds every Rego module
and data document, so its revision covers everything the decision depended on.
An OPA that serves no bundle with a revision gives no attributable decision, so
it denies.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlparse

import aiohttp
from opa_client import AsyncOpaClient
from opa_client.errors import ConnectionsError, PolicyNotFoundError, QueryExecuteError

from engine.boundary import normalize_decision, unavailable_decision
from engine.config import OpaSettings
from engine.runtime.payloads import PolicyDecision

_OPA_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionsError, QueryExecuteError,
               PolicyNotFoundError, OSError, ValueError, KeyError)


class OpaPolicy:
    """Asks OPA for one decision per proposed tool call."""

    def __init__(self, settings: OpaSettings) -> None:
        url = urlparse(settings.url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if url.scheme == "https" else 8181)
        self._ssl = url.scheme == "https"
        self._token = settings.token.get_secret_value() if settings.token else None
        self._timeout = settings.timeout_s
        self._rule = settings.rule
        self._declared: dict[tuple[str, str], bool] = {}  # (revision, package) → a module declares it

    def _client(self) -> AsyncOpaClient:
        return AsyncOpaClient(host=self._host, port=self._port, ssl=self._ssl, token=self._token,
                              retries=2, timeout=self._timeout)

    async def evaluate(self, package: str, document: dict[str, Any]) -> tuple[PolicyDecision, Any, float]:
        """Return (decision, raw OPA result, latency ms). Never raises for OPA trouble."""
        started = time.perf_counter()
        try:
            async with self._client() as client:
                answer = await client.query_rule(document, package, self._rule,
                                                 query_params={"provenance": "true"})
                provenance = answer.get("provenance")
                revision = _revision(provenance.get("bundles") if isinstance(provenance, dict) else None,
                                     "revision")
                declared = revision is not None and await self._declares(client, package, revision)
        except _OPA_ERRORS as exc:
            detail = f"OPA at {self._host}:{self._port} failed: {type(exc).__name__}: {exc}"
            return unavailable_decision(detail), None, _ms(started)
        raw = answer.get("result")
        if revision is None:
            detail = f"OPA at {self._host}:{self._port} serves no policy bundle with a revision"
            return unavailable_decision(detail), raw, _ms(started)
        if not declared:
            return unavailable_decision(f"no policy module declares package {package}", revision), raw, _ms(started)
        return normalize_decision(raw, revision), raw, _ms(started)

    async def _declares(self, client: AsyncOpaClient, package: str, revision: str) -> bool:
        """Whether a module of that revision declares the package; a data document at the same path
        does not count. Read once per revision: a bundle never changes under its revision."""
        key = (revision, package)
        if key not in self._declared:
            wanted = "/v1/data/" + package.replace(".", "/")
            info = await client.get_policies_info()
            # The module list must belong to the revision the query reported.
            if await self._bundle_revision(client) != revision:
                raise ValueError("the policy bundle changed while it was read")
            declared = any(meta["path"].endswith(wanted) for meta in info.values())
            self._declared = {k: v for k, v in self._declared.items() if k[0] == revision} | {key: declared}
        return self._declared[key]

    async def _bundle_revision(self, client: AsyncOpaClient) -> str | None:
        body = await client.get_data("system/bundles")
        return _revision(body.get("result"), "manifest")

    async def revision(self) -> str | None:
        """The revision of the bundle OPA serves now; None when unreachable or serving none."""
        try:
            async with self._client() as client:
                return await self._bundle_revision(client)
        except _OPA_ERRORS:
            return None

    async def labels(self) -> dict[str, str]:
        """Display names the policy data knows (``data.airlock.labels``: value → label); {} if none."""
        try:
            async with self._client() as client:
                body = await client.get_data("airlock/labels")
        except _OPA_ERRORS:
            return {}
        result = body.get("result")
        return {str(k).lower(): str(v) for k, v in result.items()} if isinstance(result, dict) else {}


def _revision(bundles: Any, field: str) -> str | None:
    """One revision for the bundles OPA serves (``{name: {"revision": ...}}`` from provenance, or
    ``{name: {"manifest": {"revision": ...}}}`` from ``data.system.bundles``); None if any lacks one."""
    if not isinstance(bundles, dict) or not bundles:
        return None
    revisions = {}
    for name, meta in bundles.items():
        holder = meta.get("manifest") if field == "manifest" and isinstance(meta, dict) else meta
        rev = holder.get("revision") if isinstance(holder, dict) else None
        if not isinstance(rev, str) or not rev:
            return None
        revisions[name] = rev
    if len(revisions) == 1:
        return next(iter(revisions.values()))
    return ",".join(f"{name}={rev}" for name, rev in sorted(revisions.items()))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
