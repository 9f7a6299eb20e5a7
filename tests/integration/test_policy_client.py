"""The OPA client: one connection for many decisions, retries of transient failures within the decision
budget, none of definite answers, and a denial once the budget is spent (a real OPA, and a scripted one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.boundary.policy import OpaPolicy
from engine.config import OpaSettings
from engine.local import processes as stack
from tests.helpers import ROOT
from tests.integration.test_policy_bundle import PACKAGE, STRANGER, payment

pytestmark = pytest.mark.integration
UNAVAILABLE = "policy unavailable"


class Proxy:
    """A TCP proxy to a port on loopback that counts the connections clients open through it."""

    def __init__(self, upstream: int) -> None:
        self.upstream, self.connections = upstream, 0
        self.open: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}  # client side → its serving task

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open[writer] = asyncio.current_task()  # type: ignore[assignment]
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends, then close ``writer`` (so the other pipe ends too)."""
    with suppress(OSError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    writer.close()


@asynccontextmanager
async def proxied(upstream: int) -> AsyncIterator[tuple[str, Proxy]]:
    proxy = Proxy(upstream)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", proxy
    finally:
        server.close()
        for writer in proxy.open:  # ends the pipes of connections still open
            writer.close()
        await asyncio.gather(*proxy.open.values(), return_exceptions=True)


@contextmanager
def opa_on(port: int, run_dir: Path) -> Iterator[list[Any]]:
    """OPA serving policies/ on ``port``; the list holds its process, for a test that restarts it."""
    procs = [stack.launch_opa(port, ROOT / "policies", run_dir / "opa.log", tethered=True)]
    try:
        yield procs
    finally:
        stack.stop_process(procs[-1])


def _restart_later(port: int, run_dir: Path, procs: list[Any]) -> None:
    time.sleep(0.3)  # every try in the meantime finds nothing listening
    procs.append(stack.launch_opa(port, ROOT / "policies", run_dir / "opa.log", tethered=True))


async def test_one_connection_serves_many_decisions(tmp_path: Path) -> None:
    port = stack.free_port()
    with opa_on(port, tmp_path):
        async with proxied(port) as (url, proxy):
            opa = OpaPolicy(OpaSettings(url=url))
            decisions = [(await opa.evaluate(PACKAGE, payment(STRANGER)))[0] for _ in range(40)]
            revision, labels = await opa.revision(), await opa.labels()
            await opa.aclose()
    assert proxy.connections == 1
    first = decisions[0]
    assert first.outcome == "deny" and UNAVAILABLE not in first.reasons and first.attempts == 1
    assert all(d == first for d in decisions)
    assert revision == first.revision and labels["a-1001"] == "desk lamp, order of Ana Lima"


async def test_a_restarted_opa_is_asked_again_on_a_new_connection(tmp_path: Path) -> None:
    port = stack.free_port()
    with opa_on(port, tmp_path) as procs:
        async with proxied(port) as (url, proxy):
            opa = OpaPolicy(OpaSettings(url=url))
            before, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
            stack.stop_process(procs[-1])  # the pooled connection goes stale
            procs.append(stack.launch_opa(port, ROOT / "policies", tmp_path / "opa.log", tethered=True))
            after, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
            await opa.aclose()
    assert UNAVAILABLE not in after.reasons
    assert (after.outcome, after.reasons, after.revision) == (before.outcome, before.reasons, before.revision)
    assert proxy.connections == 2


async def test_opa_down_for_a_moment_is_asked_again_within_the_budget(tmp_path: Path) -> None:
    port = stack.free_port()
    with opa_on(port, tmp_path) as procs:
        opa = OpaPolicy(OpaSettings(url=f"http://127.0.0.1:{port}", decision_budget_s=60, retries=1000))
        before, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
        stack.stop_process(procs[-1])
        restart = asyncio.create_task(asyncio.to_thread(_restart_later, port, tmp_path, procs))
        after, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
        await restart
        await opa.aclose()
    assert UNAVAILABLE not in after.reasons and after.attempts > 1
    assert (after.outcome, after.reasons, after.revision) == (before.outcome, before.reasons, before.revision)


async def test_opa_down_past_the_budget_is_denied_within_it() -> None:
    budget = 1.0
    opa = OpaPolicy(OpaSettings(url=f"http://127.0.0.1:{stack.free_port()}", decision_budget_s=budget,
                                retries=1000))
    started = time.monotonic()
    decision, raw, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
    took = time.monotonic() - started
    assert (decision.outcome, decision.reasons[0], raw) == ("deny", UNAVAILABLE, None)
    assert decision.attempts > 1 and f"attempts within the {budget:g} s decision budget" in decision.reasons[1]
    assert took < budget + 1.0


async def test_opa_that_never_answers_is_denied_within_the_budget() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the request, answers nothing, until the client gives up
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    budget = 1.0
    opa = OpaPolicy(OpaSettings(url=f"http://127.0.0.1:{port}", timeout_s=0.3, decision_budget_s=budget,
                                retries=1000))
    try:
        started = time.monotonic()
        decision, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
        took = time.monotonic() - started
    finally:
        await opa.aclose()
        server.close()
    assert (decision.outcome, decision.reasons[0]) == ("deny", UNAVAILABLE)
    assert decision.attempts > 1 and "TimeoutError" in decision.reasons[1]
    assert took < budget + 1.0


async def test_retries_stop_at_the_configured_number() -> None:
    opa = OpaPolicy(OpaSettings(url=f"http://127.0.0.1:{stack.free_port()}", decision_budget_s=60, retries=2))
    decision, _, _ = await opa.evaluate(PACKAGE, payment(STRANGER))
    assert decision.reasons[0] == UNAVAILABLE and decision.attempts == 3


FAKE = "airlock.fake"
BUNDLES = {"fake": {"revision": "r1"}}
ALLOW = {"result": {"allow": True, "reasons": ["fine"]}, "provenance": {"bundles": BUNDLES}}


@asynccontextmanager
async def scripted_opa(answers: list[tuple[int, dict[str, Any]]]) -> AsyncIterator[tuple[str, list[int]]]:
    """A stand-in for OPA that answers the decision query of ``FAKE`` with ``answers`` in turn (then
    ``ALLOW``) and serves one module declaring ``FAKE`` in bundle revision r1; the list records each
    status the decision query got."""
    given: list[int] = []

    async def decide(request: web.Request) -> web.Response:
        status, body = answers.pop(0) if answers else (200, ALLOW)
        given.append(status)
        return web.json_response(body, status=status)

    async def policies(request: web.Request) -> web.Response:
        path = [{"value": part} for part in ["data", *FAKE.split(".")]]
        return web.json_response({"result": [{"id": "fake.rego", "ast": {"package": {"path": path}}}]})

    async def bundles(request: web.Request) -> web.Response:
        return web.json_response({"result": {"fake": {"manifest": {"revision": "r1"}}}})

    app = web.Application()
    app.router.add_post("/v1/data/airlock/fake/decision", decide)
    app.router.add_get("/v1/policies/", policies)
    app.router.add_post("/v1/data/system/bundles", bundles)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", given
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("answers", [
    [(500, {"code": "internal_error"}), (502, {}), (504, {})],
    [(503, {"code": "unavailable"})],
])
async def test_a_5xx_is_asked_again(answers: list[tuple[int, dict[str, Any]]]) -> None:
    tries = len(answers) + 1
    async with scripted_opa(answers) as (url, given):
        opa = OpaPolicy(OpaSettings(url=url, decision_budget_s=60))
        decision, _, _ = await opa.evaluate(FAKE, {})
        await opa.aclose()
    assert (decision.outcome, decision.reasons, decision.revision) == ("allow", ["fine"], "r1")
    assert decision.attempts == tries and len(given) == tries


@pytest.mark.parametrize("answer, detail", [
    ((400, {"code": "invalid_parameter", "message": "bad input"}), "ClientResponseError: 400"),
    ((404, {"code": "resource_not_found"}), "ClientResponseError: 404"),
    ((200, {"provenance": {"bundles": BUNDLES}}), "decision is undefined"),
    ((200, {"result": {"allow": "yes"}, "provenance": {"bundles": BUNDLES}}), "decision is malformed"),
    ((200, {"result": {"allow": True}}), "serves no policy bundle with a revision"),
])
async def test_a_definite_answer_is_not_asked_again(answer: tuple[int, dict[str, Any]], detail: str) -> None:
    async with scripted_opa([answer]) as (url, given):  # asked again, it would allow
        opa = OpaPolicy(OpaSettings(url=url, decision_budget_s=60))
        decision, _, _ = await opa.evaluate(FAKE, {})
        await opa.aclose()
    assert (decision.outcome, decision.reasons[0], decision.attempts) == ("deny", UNAVAILABLE, 1)
    assert detail in decision.reasons[1]
    assert given == [answer[0]]
