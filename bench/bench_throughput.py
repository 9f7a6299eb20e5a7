"""Throughput and latency of a run with one allowed consequential call, against the bare graph.

Airlock: the scripted model proposes ``issue_refund`` (10.00, within the automatic limit) → validation, OPA,
execution → the model answers; ``resolve_run`` and ``record_run`` around it. Bare: a ``temporalio-langgraph``
graph of three no-op activity nodes (the issue's yardstick). Unguarded agent (``bench/agent_worker.py``, for
reference): the same scripted model and the same refund, executed at once with no boundary, so Airlock against it
is what the boundary itself costs. Each runs in its own worker process on the same Temporal dev server, in
interleaved rounds: ``BENCH_RUNS`` (60) runs started at once, then single runs one after the other. Once on
the SQLite-file dev server (what ``airlock up`` starts), once in memory.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlmodel import Session
from temporalio.client import Client

from bench.common import ROOT, Stack, cpu_s, median, services, table
from engine.local import processes as stack
from engine.spec import ResolvedSpec
from engine.store.db import migrate
from tests.conftest import add_people, copy_workflows, signing_key
from tests.helpers import refund, start_run, write_spec
from tools import support

TITLE = "Throughput: one allowed consequential call vs the bare graph"
RUNS = int(os.environ.get("BENCH_RUNS", "60"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SINGLES = int(os.environ.get("BENCH_SINGLES", "10"))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Contender:
    """One worker process and how to start one of its runs."""

    def __init__(self, name: str, proc: Any, start: Callable[[int], Awaitable[Any]],
                 check: Callable[[Any], bool], others: dict[str, int]) -> None:
        self.name, self.proc, self.start, self.check, self.others = name, proc, start, check, others
        self.batches: list[float] = []  # runs/s per batch
        self.singles: list[float] = []  # ms per single run
        self.cpu_ms: list[float] = []  # worker CPU per run, per batch
        self.stack_cpu_ms: list[float] = []  # Temporal, OPA and the scripted model: CPU per run, per batch
        self.failed = 0
        self.rss = 0.0
        self._n = 0

    @property
    def started(self) -> int:
        return self._n

    async def one(self) -> bool:
        self._n += 1
        handle = await self.start(self._n)
        return self.check(await handle.result())

    async def batch(self, runs: int) -> None:
        cpu, others = cpu_s(self.proc.pid), sum(cpu_s(p) for p in self.others.values())
        started = time.perf_counter()
        ok = await asyncio.gather(*(self.one() for _ in range(runs)))
        elapsed = time.perf_counter() - started
        self.batches.append(runs / elapsed)
        self.cpu_ms.append((cpu_s(self.proc.pid) - cpu) / runs * 1000)
        self.stack_cpu_ms.append((sum(cpu_s(p) for p in self.others.values()) - others) / runs * 1000)
        self.failed += ok.count(False)

    async def single(self) -> None:
        started = time.perf_counter()
        self.failed += not await self.one()
        self.singles.append((time.perf_counter() - started) * 1000)


def _launch(args: list[str], log: Path, env: dict[str, str]) -> Any:
    proc = stack.launch_python(args, log, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=ROOT, tethered=True)
    stack.wait_until(lambda: "worker ready" in log.read_text(errors="replace"), "worker", proc, 90, log)
    return proc


def _specs(folder: Path, db_url: str) -> list[ResolvedSpec]:
    """One spec per concurrent run, each refunding its own order (refunds of one order run one at a time)."""
    with Session(support.ledger(db_url)) as session:
        for i in range(RUNS):
            if session.get(support.Order, f"C-{i:04d}") is None:
                session.add(support.Order(order_id=f"C-{i:04d}", customer_id="cus_ana", total=10_000_000, item="x"))
        session.commit()
    return [write_spec(folder, [{"tool_calls": [refund(f"C-{i:04d}", "10.00")]}, {"content": "done"}],
                       spec_file=f"bench{i}.yaml", name=f"refund-bench-{i}") for i in range(RUNS)]


class Workers:
    """Both worker processes on one stack, and a Contender for each; stop() ends them."""

    def __init__(self, services_: Stack, work: Path) -> None:
        db_url = f"sqlite:///{work / 'airlock.db'}"
        migrate(db_url)
        add_people(db_url)
        copy_workflows(work / "workflows")
        self.specs = _specs(work / "workflows", db_url)
        env = {"AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_STATE_DIR": str(work / "state"),
               "AIRLOCK_DATABASE_URL": db_url, "AIRLOCK_TEMPORAL__ADDRESS": services_.temporal_address,
               "AIRLOCK_TEMPORAL__TASK_QUEUE": "airlock", "AIRLOCK_OPA__URL": services_.opa_url,
               "AIRLOCK_LLM__SCRIPTED_URL": services_.scripted_url, "AIRLOCK_WORKFLOWS_DIR": str(work / "workflows"),
               "AIRLOCK_AUTH__SIGNING_KEY": signing_key()}
        self.services, self.procs = services_, []
        self.procs.append(_launch(["-m", "engine.cli", "worker"], work / "airlock-worker.log", env))
        self.procs.append(_launch(["-c", "from bench.bare_worker import main; main()", services_.temporal_address,
                                   "bare"], work / "bare-worker.log", {}))
        self.procs.append(_launch(["-c", "from bench.agent_worker import main; main()", services_.temporal_address,
                                   "unguarded", services_.scripted_url, str(work / "unguarded.db")],
                                  work / "unguarded-worker.log", {}))
        self.script = write_spec(work / "unguarded", [{"tool_calls": [refund("C-0000", "10.00")]},
                                                      {"content": "done"}]).model.script

    async def contenders(self) -> tuple[Contender, Contender, Contender]:
        client = await Client.connect(self.services.temporal_address)

        async def start_airlock(n: int) -> Any:
            return await start_run(client, task_queue="airlock", spec=self.specs[n % RUNS],
                                   run_input={"customer_id": "cus_ana"})

        async def start_bare(n: int) -> Any:
            return await client.start_workflow("BareGraphWorkflow", f"bare-{n}", id=f"bare-{time.time_ns()}-{n}",
                                               task_queue="bare")

        async def start_unguarded(n: int) -> Any:
            run_id = f"unguarded-{time.time_ns()}-{n}"
            return await client.start_workflow("UnguardedAgentWorkflow", args=[run_id, self.script,
                                               "Refund 10.00 of order C-0000: the item arrived damaged."],
                                               id=run_id, task_queue="unguarded")

        def executed(result: Any) -> bool:
            return result.status == "completed" and [c.outcome for c in result.tool_calls] == ["executed"]

        airlock = Contender("Airlock", self.procs[0], start_airlock, executed, self.services.pids)
        bare = Contender("bare graph", self.procs[1], start_bare, lambda r: r == ["model", "check", "execute"],
                         self.services.pids)
        unguarded = Contender("unguarded agent", self.procs[2], start_unguarded, lambda r: r == "done",
                              self.services.pids)
        return airlock, bare, unguarded

    def stop(self) -> None:
        for proc in self.procs:
            stack.stop_process(proc)


async def _measure(services_: Stack, work: Path) -> list[Contender]:
    workers = Workers(services_, work)
    try:
        contenders = list(await workers.contenders())
        for contender in contenders:  # warm each up: imports, connections, caches
            await contender.batch(5)
            for figures in (contender.batches, contender.cpu_ms, contender.stack_cpu_ms):
                figures.clear()
        for r in range(ROUNDS):  # each round in another order
            for contender in contenders[r % 3:] + contenders[:r % 3]:
                await contender.batch(RUNS)
        for i in range(SINGLES):
            for contender in contenders[i % 3:] + contenders[:i % 3]:
                await contender.single()
        for contender in contenders:
            contender.rss = _rss_mib(contender.proc.pid)
        unguarded = contenders[2]  # every run of the unguarded agent refunded once: a missing effect is a failure
        with sqlite3.connect(work / "unguarded.db") as db:
            unguarded.failed += abs(unguarded.started - db.execute("SELECT count(*) FROM refunds").fetchone()[0])
        return contenders
    finally:
        workers.stop()


async def memory_curves(services_: Stack, work: Path, *, total: int, batch: int) -> dict[str, list[tuple[int, float]]]:
    """(runs completed, worker RSS MiB) after each batch, for both workers, batches interleaved."""
    workers = Workers(services_, work)
    try:
        contenders = (await workers.contenders())[:2]  # Airlock and the bare graph
        curves: dict[str, list[tuple[int, float]]] = {c.name: [] for c in contenders}
        for done in range(batch, total + 1, batch):
            for contender in contenders:
                await contender.batch(batch)
                curves[contender.name].append((done, _rss_mib(contender.proc.pid)))
        failed = {c.name: c.failed for c in contenders if c.failed}
        if failed:
            raise RuntimeError(f"runs failed during the memory benchmark: {failed}")
        return curves
    finally:
        workers.stop()


def main() -> str:
    out = []
    servers = (("SQLite-file dev server", True), ("in-memory dev server", False))
    chosen = os.environ.get("BENCH_SERVERS", "file,memory").split(",")
    for label, in_file in [s for s in servers if ("file" if s[1] else "memory") in chosen]:
        with tempfile.TemporaryDirectory(prefix="airlock-bench-") as tmp, \
                services(Path(tmp) / "services", temporal_file=in_file) as services_:
            airlock, bare, unguarded = asyncio.run(_measure(services_, Path(tmp)))
        throughput = median(airlock.batches) / median(bare.batches)
        latency = median(airlock.singles) / median(bare.singles)
        rows = [[c.name, f"{median(c.batches):.1f}", f"{median(c.singles):.0f}", f"{median(c.cpu_ms):.0f}",
                 f"{median(c.stack_cpu_ms):.0f}", f"{c.rss:.0f}", c.failed]
                for c in (airlock, bare, unguarded)]
        out.append(f"**{label}**, {RUNS} runs started at once × {ROUNDS} rounds, {SINGLES} single runs each\n\n"
                   + table(["worker", "runs/s (median batch)", "single run ms (median)", "worker CPU ms/run",
                            "Temporal+OPA+model CPU ms/run", "worker RSS MiB", "failed runs"], rows)
                   + "\n\n" + table(["ratio", "measured", "target", "met"], [
                       ["throughput Airlock / bare", f"{throughput:.2f}×", "≥ 0.80×",
                        "yes" if throughput >= 0.8 else "no"],
                       ["single-run latency Airlock / bare", f"{latency:.2f}×", "≤ 1.50×",
                        "yes" if latency <= 1.5 else "no"],
                       ["throughput Airlock / unguarded agent",
                        f"{median(airlock.batches) / median(unguarded.batches):.2f}×", "(reference)", ""],
                       ["single-run latency Airlock / unguarded agent",
                        f"{median(airlock.singles) / median(unguarded.singles):.2f}×", "(reference)", ""],
                       ["worker CPU per run Airlock / unguarded agent",
                        f"{median(airlock.cpu_ms) / median(unguarded.cpu_ms):.2f}×", "(reference)", ""]]))
    return "\n\n".join(out)


if __name__ == "__main__":
    print(main())
