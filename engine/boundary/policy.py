"""OPA adapter: the only importer of ``opa_client``; fails closed.

A decision comes with the revision of the policy bundle that made it, read
with the query itself (OPA's ``provenance``): the bundle holds every Rego module
and data document, so its revision covers everything the decision depended on.
An OPA that serves no bundle with a revision gives no attributable decision, so
it denies.

One client, and so one pooled connection, serves every call made on an event
loop (a worker's, the UI's). A transient failure (OPA unreachable, too slow,
restarting, a 5xx, a pooled connection OPA closed) is retried with a short
backoff, within a decision budget (``OpaSettings.decision_budget_s``); a
definite answer (a 4xx, an undefined decision, no bundle revision) is never
retried. When the budget is spent the call is denied, as when OPA is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import aiohttp
from opa_client import AsyncOpaClient

from engine.boundary import normalize_decision, unavailable_decision
from engine.config import OpaSettings
from engine.runtime.payloads import PolicyDecision

T = TypeVar("T")

# The pause before retry n (1, 2, ...) is BACKOFF_S * 2**(n - 1), at most BACKOFF_MAX_S.
BACKOFF_S = 0.05
BACKOFF_MAX_S = 1.0


class _BundleChanged(Exception):
    """OPA activated another bundle while a decision was being read: asking again gives a consistent one."""


class _Unavailable(Exception):
    """No decision from OPA: what went wrong (``detail``) and how many times it was asked (``attempts``)."""

    def __init__(self, detail: str, attempts: int) -> None:
        super().__init__(detail)
        self.detail, self.attempts = detail, attempts


@dataclass
class _LoopClient:
    """The client of one event loop, held open by ``holder`` (see ``_open_while_loop_runs``)."""

    loop: asyncio.AbstractEventLoop
    client: AsyncOpaClient
    holder: AsyncGenerator[None, None]


async def _open_while_loop_runs(client: AsyncOpaClient) -> AsyncGenerator[None, None]:
    """Keep ``client``'s session open until this generator is closed.

    An aiohttp session must be closed on the loop that opened it. A suspended async generator is closed
    by that loop: by ``shutdown_asyncgens()`` before the loop closes (``asyncio.run`` calls it), or, when
    nothing refers to it any more, by the loop's finalizer. So the session is closed on its own loop
    whoever runs that loop, even when nobody calls ``OpaPolicy.aclose``.
    """
    async with client:
        yield


def _transient(exc: BaseException) -> bool:
    """Whether asking again may succeed: OPA unreachable, too slow, restarting or failing for a moment
    (5xx), a pooled connection it closed, its bundle replaced mid-read. A 4xx or a malformed answer
    would be the same again."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status >= 500
    return isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError,
                            ConnectionError, _BundleChanged))


# Every failure that asking OPA can raise here; anything else is a bug and propagates.
_OPA_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError, _BundleChanged)


class OpaPolicy:
    """Asks OPA for one decision per proposed tool call."""

    def __init__(self, settings: OpaSettings) -> None:
        url = urlparse(settings.url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if url.scheme == "https" else 8181)
        self._ssl = url.scheme == "https"
        self._token = settings.token.get_secret_value() if settings.token else None
        self._timeout = settings.timeout_s
        self._budget = settings.decision_budget_s
        self._retries = settings.retries
        self._rule = settings.rule
        self._declared: dict[tuple[str, str], bool] = {}  # (revision, package) → a module declares it
        self._held: _LoopClient | None = None

    async def _client(self) -> AsyncOpaClient:
        """The running loop's client, opened on first use (again when the loop changed, or after ``aclose``)."""
        loop = asyncio.get_running_loop()
        held = self._held
        if held is None or held.loop is not loop:
            # The library's own retries would sleep outside the decision budget: ``_asking`` retries instead.
            client = AsyncOpaClient(host=self._host, port=self._port, ssl=self._ssl, token=self._token,
                                    retries=0, timeout=self._timeout)
            holder = _open_while_loop_runs(client)
            await anext(holder)
            # A client left behind by another loop is closed by that loop (``_open_while_loop_runs``).
            self._held = held = _LoopClient(loop, client, holder)
        return held.client

    async def aclose(self) -> None:
        """Close the running loop's client and its connection, for whoever stops using this policy (a
        worker that stops); a later call opens a new one."""
        held, self._held = self._held, None
        if held is not None and held.loop is asyncio.get_running_loop():
            await held.holder.aclose()

    async def _asking(self, work: Callable[[AsyncOpaClient], Awaitable[T]]) -> tuple[T, int]:
        """``work``'s answer and how many times it was tried: again after a transient failure, with a
        backoff, while the decision budget lasts and at most ``retries`` more times; each try gets at
        most ``timeout_s`` and never more than the budget has left.

        Raises:
            _Unavailable: a definite failure, or a transient one that lasted past the budget or the retries.
        """
        deadline = time.monotonic() + self._budget
        attempts = 0
        while True:
            attempts += 1
            try:
                async with asyncio.timeout(min(self._timeout, deadline - time.monotonic())):
                    return await work(await self._client()), attempts
            except _OPA_ERRORS as exc:
                if not _transient(exc):
                    raise _Unavailable(self._failed(exc, attempts), attempts) from exc
                failure = exc
            pause = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (attempts - 1))
            if attempts > self._retries or deadline - time.monotonic() <= pause:
                raise _Unavailable(self._failed(failure, attempts), attempts) from failure
            await asyncio.sleep(pause)

    def _failed(self, exc: BaseException, attempts: int) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        tries = f" ({attempts} attempts within the {self._budget:g} s decision budget)" if attempts > 1 else ""
        return f"OPA at {self._host}:{self._port} failed: {text}{tries}"

    async def evaluate(self, package: str, document: dict[str, Any]) -> tuple[PolicyDecision, Any, float]:
        """Return (decision, raw OPA result, latency ms); the decision counts the times OPA was asked.
        Never raises for OPA trouble."""
        started = time.perf_counter()
        try:
            (raw, revision, declared), attempts = await self._asking(
                lambda client: self._decide(client, package, document))
        except _Unavailable as exc:
            decision, raw, attempts = unavailable_decision(exc.detail), None, exc.attempts
        else:
            if revision is None:
                decision = unavailable_decision(f"OPA at {self._host}:{self._port} serves no policy bundle "
                                                "with a revision")
            elif not declared:
                decision = unavailable_decision(f"no policy module declares package {package}", revision)
            else:
                decision = normalize_decision(raw, revision)
        decision.attempts = attempts
        return decision, raw, _ms(started)

    async def _decide(self, client: AsyncOpaClient, package: str,
                      document: dict[str, Any]) -> tuple[Any, str | None, bool]:
        """One try: (OPA's result, the bundle revision that made it, whether a module declares the package)."""
        answer = await client.query_rule(document, package, self._rule, query_params={"provenance": "true"})
        if not isinstance(answer, dict):
            raise ValueError(f"the answer for package {package} is not a JSON object")
        provenance = answer.get("provenance")
        revision = _revision(provenance.get("bundles") if isinstance(provenance, dict) else None, "revision")
        declared = revision is not None and await self._declares(client, package, revision)
        return answer.get("result"), revision, declared

    async def _declares(self, client: AsyncOpaClient, package: str, revision: str) -> bool:
        """Whether a module of that revision declares the package; a data document at the same path
        does not count. Read once per revision: a bundle never changes under its revision."""
        key = (revision, package)
        if key not in self._declared:
            wanted = "/v1/data/" + package.replace(".", "/")
            info = await client.get_policies_info()
            # The module list must belong to the revision the query reported.
            if await self._bundle_revision(client) != revision:
                raise _BundleChanged(f"OPA replaced bundle revision {revision} while its modules were read")
            declared = any(meta["path"].endswith(wanted) for meta in info.values())
            self._declared = {k: v for k, v in self._declared.items() if k[0] == revision} | {key: declared}
        return self._declared[key]

    @staticmethod
    async def _bundle_revision(client: AsyncOpaClient) -> str | None:
        return _revision(_result(await client.query_rule({}, "system.bundles")), "manifest")

    async def revision(self) -> str | None:
        """The revision of the bundle OPA serves now; None when unreachable or serving none."""
        try:
            revision, _ = await self._asking(self._bundle_revision)
        except _Unavailable:
            return None
        return revision

    async def labels(self) -> dict[str, str]:
        """Display names the policy data knows (``data.airlock.labels``: value → label); {} if none."""
        try:
            body, _ = await self._asking(lambda client: client.query_rule({}, "airlock.labels"))
        except _Unavailable:
            return {}
        result = _result(body)
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


def _result(body: Any) -> Any:
    """The ``result`` of an answer from OPA's data API; None when undefined or the answer is malformed."""
    return body.get("result") if isinstance(body, dict) else None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
