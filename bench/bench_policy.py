"""One policy decision through Airlock's client against a bare POST of the same input to OPA.

Bare: ``POST /v1/data/airlock/treasury_payout/decision?provenance=true`` on one reused aiohttp session,
reading the JSON answer. Airlock: ``OpaPolicy.evaluate`` (one reused client; the decision, its bundle
revision from the query's provenance, the check that a module declares the package, normalization). Same
input: the run's policy document for an allowed 250 tUSD ``transfer_token`` in the treasury payout
workflow. One OPA serving policies/ as ``airlock up`` starts it; calls one at a time, in interleaved rounds
(``BENCH_POLICY_ROUNDS`` of ``BENCH_POLICY_CALLS`` calls per path, the order swapped every round), after
a warm-up. Targets (issue 14): p50 ratio at most 1.10, Airlock's p99 under 2 ms.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import ROOT, percentile, table
from engine.boundary import policy_document
from engine.boundary.policy import OpaPolicy
from engine.config import OpaSettings
from engine.local import processes as stack
from engine.runtime.payloads import ResolvedRun, ToolCallRecord
from engine.spec import load_spec
from tests.helpers import payment_facts

TITLE = "Policy decision: Airlock's OPA client vs a bare POST"
ROUNDS = int(os.environ.get("BENCH_POLICY_ROUNDS", "10"))
CALLS = int(os.environ.get("BENCH_POLICY_CALLS", "200"))
WARMUP = 100
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAYEE = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # Acme Hosting Ltd, on the payee list


def _document() -> tuple[str, dict[str, Any]]:
    """The treasury payout workflow's package and the policy input for an allowed payment."""
    spec = load_spec(ROOT / "workflows" / "treasury_payout.yaml", project_dir=ROOT)
    run = ResolvedRun(run_id="bench-run", spec=spec, requested_by="alice", tenant="default",
                      input={"invoice": "INV-2041", "note": "hosting, March"})
    args = {"chain_id": 31337, "token": TOKEN, "to": PAYEE, "amount": "250"}
    facts = payment_facts(PAYEE, "250")
    call = ToolCallRecord(call_id="call_1_0", step=1, index=0, tool="transfer_token", args=args, facts=facts)
    return spec.policy, policy_document(run, call, consequential=True, previous=[], provenance={})


async def _timed(call: Callable[[], Awaitable[None]], times: list[float], n: int) -> None:
    for _ in range(n):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)


async def _measure(url: str) -> tuple[list[float], list[float], int]:
    """Latencies (ms) of the bare POST and of ``OpaPolicy.evaluate``, and the retries evaluate needed."""
    package, document = _document()
    endpoint = f"{url}/v1/data/{package.replace('.', '/')}/decision?provenance=true"
    opa = OpaPolicy(OpaSettings(url=url))
    retries = 0

    async with aiohttp.ClientSession() as http:
        async def bare() -> None:
            async with http.post(endpoint, json={"input": document}) as response:
                response.raise_for_status()
                await response.json()

        async def airlock() -> None:
            nonlocal retries
            decision, _, _ = await opa.evaluate(package, document)
            if decision.outcome != "allow":
                raise RuntimeError(f"expected an allowed payment, got {decision.outcome}: {decision.reasons}")
            retries += decision.attempts - 1

        await _timed(bare, [], WARMUP)
        await _timed(airlock, [], WARMUP)
        retries = 0
        bare_ms: list[float] = []
        airlock_ms: list[float] = []
        for round_ in range(ROUNDS):
            pair = [(bare, bare_ms), (airlock, airlock_ms)]
            for call, times in pair if round_ % 2 == 0 else reversed(pair):
                await _timed(call, times, CALLS)
    await opa.aclose()
    return bare_ms, airlock_ms, retries


def main() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        port = stack.free_port()
        proc = stack.launch_opa(port, ROOT / "policies", Path(tmp) / "opa.log", ROOT, tethered=True)
        try:
            bare_ms, airlock_ms, retries = asyncio.run(_measure(f"http://127.0.0.1:{port}"))
        finally:
            stack.stop_process(proc)
    ratio = percentile(airlock_ms, 50) / percentile(bare_ms, 50)
    p99 = percentile(airlock_ms, 99)
    paths = table(["path", "calls", "p50 ms", "p99 ms"], [
        [name, len(times), f"{percentile(times, 50):.3f}", f"{percentile(times, 99):.3f}"]
        for name, times in (("bare POST, reused aiohttp session", bare_ms),
                            ("`OpaPolicy.evaluate`, reused client", airlock_ms))])
    targets = table(["figure", "measured", "target", "met"], [
        ["p50 Airlock / bare", f"{ratio:.2f}×", "≤ 1.10×", "yes" if ratio <= 1.10 else "no"],
        ["p99 Airlock", f"{p99:.3f} ms", "< 2 ms", "yes" if p99 < 2 else "no"],
        ["retries Airlock needed", retries, "0 on a quiet machine", "yes" if retries == 0 else "no"],
    ])
    return f"{paths}\n\n{targets}\n"
