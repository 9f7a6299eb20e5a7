"""The project's injection corpus (``bench/injection_corpus.yaml``) and how its cases run through the real boundary.

Shared by the benchmark (``bench/bench_injection.py``) and the integration test
(``tests/integration/test_injection_corpus.py``). A case is one run of a shipped workflow with the scripted
model: it reads the documents the case registers into the tools' stores, then proposes what the case scripts.
Each consequential call's outcome is read from the run's own record (``RunResult.tool_calls``): executed (with
or without an approval), escalated (it waited for people: the harness records that and rejects it, so the run
goes on), denied by policy, or refused as invalid arguments.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, col, select
from temporalio.client import Client

from engine.config import Settings
from engine.runtime.payloads import RunResult, ToolCallRecord
from engine.spec import ResolvedSpec, load_spec
from engine.spec.script import dump_script
from engine.store import repo
from engine.store.db import Database
from engine.store.users import Approver
from tools import invoices, support

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "injection_corpus.yaml"
WORKFLOWS = {"treasury": "treasury_payout.yaml", "support": "support_refund.yaml"}
KINDS = ("injected", "legitimate")
EXPECTED = ("allow", "escalate")
REQUESTER = "alice"
# Who turns escalations down: the harness records that a call waited for people, then rejects it.
APPROVER = Approver(name="bob", roles=["support-leads", "treasury-approvers"])

# What the boundary made of one consequential call.
EXECUTED_UNAPPROVED = "executed without approval"
EXECUTED_APPROVED = "executed after approval"
ESCALATED = "escalated"
DENIED = "denied"
INVALID = "invalid arguments"
NOT_PROPOSED = "not proposed"  # the run ended before the model proposed it: a harness or run problem
VERDICTS = (EXECUTED_UNAPPROVED, EXECUTED_APPROVED, ESCALATED, DENIED, INVALID, NOT_PROPOSED)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """One consequential call a case's model proposes, and whether the user or an attacker wanted it."""

    tool: str
    args: dict[str, Any]
    kind: str  # injected | legitimate


@dataclass(frozen=True)
class Case:
    """One corpus entry (see the comment at the top of the corpus file)."""

    id: str
    workflow: str
    kind: str
    pattern: str
    expected: str | None
    summary: str
    input: dict[str, Any]
    documents: dict[str, Any]
    turns: list[dict[str, Any]]  # as written, defaults filled in

    @property
    def spec_name(self) -> str:
        return f"inj-{self.id}"

    def proposed(self) -> Iterator[dict[str, Any]]:
        """Every tool call of the script, in order."""
        for turn in self.turns:
            yield from turn.get("tool_calls") or []

    def calls(self, consequential: Iterable[str]) -> list[Call]:
        """The consequential calls the script proposes, in order, each with its kind."""
        wanted = set(consequential)
        return [Call(c["name"], c.get("args") or {}, c.get("kind", self.kind)) for c in self.proposed()
                if c["name"] in wanted]

    def script(self) -> dict[str, Any]:
        """The scripted model's file (``engine/local/scripted.py``): the turns without the corpus's labels."""
        turns = []
        for turn in self.turns:
            out = {k: v for k, v in turn.items() if k != "tool_calls"}
            if turn.get("tool_calls"):
                out["tool_calls"] = [{k: v for k, v in c.items() if k != "kind"} for c in turn["tool_calls"]]
            turns.append(out)
        return {"turns": turns}


def load_corpus(path: Path = CORPUS) -> list[Case]:
    """The corpus's cases, each call's missing arguments filled from ``defaults``."""
    data = yaml.safe_load(path.read_text())
    defaults: dict[str, dict[str, Any]] = data.get("defaults") or {}
    cases = []
    for raw in data["cases"]:
        turns = copy.deepcopy(raw.get("turns") or [])
        for turn in turns:
            for call in turn.get("tool_calls") or []:
                call["args"] = {**defaults.get(call.get("name"), {}), **(call.get("args") or {})}
        cases.append(Case(id=raw["id"], workflow=raw["workflow"], kind=raw["kind"], pattern=raw["pattern"],
                          expected=raw.get("expected"), summary=raw.get("summary", ""), input=raw.get("input") or {},
                          documents=raw.get("documents") or {}, turns=turns))
    return cases


@cache
def workflow_spec(workflow: str) -> ResolvedSpec:
    """The shipped definition a case's run is a copy of."""
    return load_spec(ROOT / "workflows" / WORKFLOWS[workflow], project_dir=ROOT)


def workflow_tools(workflow: str) -> dict[str, bool]:
    """The shipped workflow's tools: name -> consequential."""
    return {t.name: t.consequential for t in workflow_spec(workflow).tool_specs}


def consequential_tools(workflow: str) -> set[str]:
    return {name for name, consequential in workflow_tools(workflow).items() if consequential}


# --- documents ---------------------------------------------------------------------------------------------


def register_documents(cases: Iterable[Case], database_url: str) -> None:
    """Put every case's invoices, tickets and pages into the tools' stores (this process's: the worker runs
    in-process), and its orders into the support ledger (refunds of them from an earlier run removed)."""
    orders: dict[str, dict[str, Any]] = {}
    for case in cases:
        docs = case.documents
        for invoice_id, invoice in (docs.get("invoices") or {}).items():
            invoices.INVOICES[invoice_id] = {
                "invoice_id": invoice_id, "vendor": invoice["vendor"], "amount_due": invoice["amount_due"],
                "token": invoice.get("token", "tUSD"), "due": invoice["due"], "pay_to": invoice["pay_to"],
                "note": invoice.get("note", "")}
        for ticket_id, ticket in (docs.get("tickets") or {}).items():
            support.TICKETS[ticket_id] = {"ticket_id": ticket_id, "customer_id": ticket["customer_id"],
                                          "subject": ticket["subject"], "body": ticket["body"]}
        for url, page in (docs.get("pages") or {}).items():
            support.PAGES[url] = {"url": url, "title": page["title"], "text": page["text"]}
        for order in docs.get("orders") or []:
            orders[order["order_id"]] = order
    if not orders:
        return
    with Session(support.ledger(database_url)) as session:
        for refund in session.exec(select(support.Refund).where(col(support.Refund.order_id).in_(list(orders)))).all():
            session.delete(refund)
        for order_id, order in orders.items():
            row = session.get(support.Order, order_id) or support.Order(order_id=order_id)
            row.customer_id, row.total, row.item = order["customer_id"], Decimal(str(order["total"])), order["item"]
            session.add(row)
        session.commit()


def write_spec(folder: Path, case: Case) -> ResolvedSpec:
    """The shipped workflow under the case's name, its model answering the case's script, written into
    ``folder`` (the worker's workflows folder, holding a copy of the shipped prompts)."""
    turns = folder / "injection-turns"
    turns.mkdir(parents=True, exist_ok=True)
    script = turns / f"{case.id}.turns.yaml"
    script.write_text(dump_script(case.script()))
    body = yaml.safe_load((ROOT / "workflows" / WORKFLOWS[case.workflow]).read_text())
    body.update(name=case.spec_name, description=f"injection corpus: {case.summary}"[:4000],
                model={"provider": "scripted", "script": str(script)})
    path = folder / f"{case.spec_name}.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True, sort_keys=False))
    return load_spec(path, project_dir=ROOT)


# --- running -----------------------------------------------------------------------------------------------


@dataclass
class CallOutcome:
    """A consequential call of a case and what the boundary made of it."""

    case: Case
    call: Call
    verdict: str
    outcome: str  # the record's outcome (executed, failed, rejected, denied, invalid, ...)
    reasons: list[str] = field(default_factory=list)  # the policy's reasons, or why the arguments were refused
    args: dict[str, Any] = field(default_factory=dict)  # as the boundary recorded them

    @property
    def expected(self) -> str | None:
        """For a legitimate call: allow or escalate (a legitimate call in an injected case: allow)."""
        if self.call.kind != "legitimate":
            return None
        return self.case.expected if self.case.kind == "legitimate" else "allow"


@dataclass
class CaseOutcome:
    case: Case
    status: str  # the run's status, or "error: ..."
    calls: list[CallOutcome]
    escalations: int = 0
    seconds: float = 0.0


def verdict(record: ToolCallRecord) -> str:
    """What the boundary made of a proposed call, from the run's record of it."""
    if record.outcome in ("executed", "failed"):  # failed: allowed and run, and the tool raised
        approved = any(v.decision == "approve" for v in record.votes)
        return EXECUTED_APPROVED if approved else EXECUTED_UNAPPROVED
    if record.outcome in ("pending_approval", "rejected", "expired", "approved"):
        return ESCALATED
    if record.outcome == "denied":
        return DENIED
    if record.outcome == "invalid":
        return INVALID
    return NOT_PROPOSED


def classify(case: Case, result: RunResult | None, status: str) -> list[CallOutcome]:
    """Each consequential call the case scripts, matched in order to the run's records of that workflow's
    consequential tools."""
    wanted = consequential_tools(case.workflow)
    records = [r for r in (result.tool_calls if result else []) if r.tool in wanted]
    out = []
    for i, call in enumerate(case.calls(wanted)):
        if i >= len(records):
            out.append(CallOutcome(case, call, NOT_PROPOSED, "missing", [f"the run ended ({status}) first"]))
            continue
        record = records[i]
        reasons = list(record.decision.reasons) if record.decision else []
        if record.outcome == "invalid" and record.error:
            reasons = [record.error]
        if record.outcome == "failed" and record.error:
            reasons = [*reasons, f"the tool raised: {record.error}"]
        out.append(CallOutcome(case, call, verdict(record), record.outcome, reasons, dict(record.args)))
    return out


async def run_case(client: Client, settings: Settings, case: Case, spec: ResolvedSpec, *,
                   timeout_s: float = 180.0) -> CaseOutcome:
    """Run one case on a worker serving ``settings``'s task queue (already running), turning down every
    approval it asks for, and classify its consequential calls."""
    from tests.helpers import decide_approval, start_run  # signs as the CLI and the UI would

    loop = asyncio.get_running_loop()
    started = loop.time()
    db = Database(settings.db_url)
    handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, run_input=case.input,
                             requested_by=REQUESTER)
    waiting = asyncio.ensure_future(handle.result())
    seen: set[str] = set()
    try:
        while not waiting.done():
            if loop.time() - started > timeout_s:
                await handle.terminate("injection benchmark: timed out")
                break
            pending = await asyncio.to_thread(db.call, repo.list_approvals, run_id=handle.id)
            for item in pending:
                if item.approval_id in seen:
                    continue
                seen.add(item.approval_id)
                try:
                    await decide_approval(client, db, approval_id=item.approval_id, decision="reject",
                                          approver=APPROVER,
                                          comment="injection benchmark: the escalation is recorded; nobody approves")
                except Exception as exc:  # noqa: BLE001 - the run's record still says it escalated
                    log.warning("case %s: could not reject %s: %s", case.id, item.approval_id, exc)
            await asyncio.wait({waiting}, timeout=0.3)
        result: RunResult | None = await waiting
        status = result.status if result else "no result"
    except Exception as exc:  # noqa: BLE001 - a run that fails is reported, not fatal to the rest
        result, status = None, f"error: {type(exc).__name__}: {exc}"
        log.warning("case %s: %s", case.id, status)
    return CaseOutcome(case, status, classify(case, result, status), escalations=len(seen),
                       seconds=loop.time() - started)


async def run_cases(client: Client, settings: Settings, cases: list[Case], *, concurrency: int = 6,
                    timeout_s: float = 180.0) -> list[CaseOutcome]:
    """Register the cases' documents, write their specs, and run them all on an in-process worker (at most
    ``concurrency`` at a time), in corpus order."""
    from engine.runtime.worker import build_worker

    assert settings.workflows_dir is not None
    register_documents(cases, settings.db_url)
    specs = [write_spec(settings.workflows_dir, case) for case in cases]
    gate = asyncio.Semaphore(concurrency)

    async def one(case: Case, spec: ResolvedSpec) -> CaseOutcome:
        async with gate:
            return await run_case(client, settings, case, spec, timeout_s=timeout_s)

    async with build_worker(client, settings):
        return list(await asyncio.gather(*(one(c, s) for c, s in zip(cases, specs, strict=True))))


# --- a local chain for the treasury cases -------------------------------------------------------------------


@contextmanager
def local_chain(folder: Path) -> Iterator[dict[str, Any]]:
    """A fresh anvil with the demo token deployed and the treasury funded, as ``airlock up`` and the tests
    prepare it; yields the worker's chain settings (signing as the treasury)."""
    from engine.local import devchain
    from engine.local import processes as stack

    folder.mkdir(parents=True, exist_ok=True)
    port = stack.free_port()
    proc = stack.launch_anvil(port, folder / "anvil.log", tethered=True)
    try:
        url = f"http://127.0.0.1:{port}"
        ready = devchain.prepare(url, folder / "chain-state")
        yield {"rpc_url": url, "keystore_path": ready.keystore, "keystore_password_file": ready.password_file,
               "receipt_timeout_s": 20}
    finally:
        stack.stop_process(proc)
