"""``airlock demo``: the support-refund workflow on the local stack, step by step.

The model is the scripted one (recorded turns) so the demo runs offline; the
policy decisions, the durable wait for approval and the ledger are real.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine import localstack, render
from engine.config import Settings
from engine.errors import StackError
from engine.runs import decide_approval, start_run
from engine.spec import load_spec
from engine.store import repo, users
from engine.store.db import make_engine, migrate
from engine.store.repo import ApprovalView
from engine.temporal import connect
from temporalio.client import WorkflowHandle

REQUESTER, APPROVER = "alice", "bob"
DEMO_PASSWORD = "airlock-demo"  # demo accounts only; real ones come from `airlock users add`


async def run_demo(settings: Settings, console: Console) -> None:
    """Start the stack, run the workflow, approve the gated refund, show the outcome."""
    console.rule("1. local stack")
    localstack.up(settings, lambda line: console.print("  " + line, highlight=False))
    spec = load_spec(settings.workflows_dir / "support_refund.yaml", project_dir=settings.project_dir)

    from tools import support  # the example's own tool module (on the project path now)

    migrate(settings.db_url)
    support.reset_demo_ledger(settings.db_url)
    with Session(make_engine(settings.db_url)) as session:
        users.add_user(session, name=REQUESTER, password=DEMO_PASSWORD, roles=["support"])
        approver = users.add_user(session, name=APPROVER, password=DEMO_PASSWORD, roles=["support-leads"])
    console.print(f"  demo accounts: {REQUESTER} (support), {APPROVER} (support-leads), password {DEMO_PASSWORD}")
    console.print("  demo ledger reset: orders A-1001 (40 EUR), A-1002 (320 EUR), A-1003 (1200 EUR) of cus_ana")

    console.rule("2. the run")
    client = await connect(settings.temporal)
    handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, requested_by=REQUESTER,
                             run_input={"customer_id": "cus_ana",
                                        "message": "My lamp broke, my chair came late and I want the desk refunded."})
    console.print(f"  {REQUESTER} started run {handle.id} of {spec.name} v{spec.version} "
                  f"with the [bold]scripted model[/] ({spec.model.script})", highlight=False)
    console.print(f"  Temporal UI: http://127.0.0.1:{settings.temporal.ui_port}/namespaces/"
                  f"{settings.temporal.namespace}/workflows/{handle.id}", highlight=False)

    engine = make_engine(settings.db_url)
    pending = await _first_pending(engine, handle)
    console.rule("3. a gated action waits durably for a person")
    console.print(render.approval_panel(pending), highlight=False)
    console.print(f"  {REQUESTER} may not approve her own run's actions; {APPROVER} approves:")
    outcome = await decide_approval(client, engine, approval_id=pending.approval_id, decision="approve",
                                    approver=approver, comment="late delivery confirmed with the carrier",
                                    digest=pending.digest, source="airlock demo")
    console.print(f"  $ airlock approve {pending.approval_id} --as {APPROVER}  →  {outcome.status}", highlight=False)

    result = await handle.result()
    console.rule("4. what happened")
    render.print_result(console, result)
    with Session(support.ledger(settings.db_url)) as session:
        refunds = session.exec(select(support.Refund).order_by(support.Refund.refund_id)).all()  # type: ignore[arg-type]
        console.print("ledger (support_refunds): " + (", ".join(f"{r.order_id} {r.amount} {r.currency}"
                                                               for r in refunds) or "empty"), highlight=False)
    console.print(f"\nThe stack keeps running. Approval inbox: http://{settings.ui.host}:{settings.ui.port} "
                  f"(sign in as {APPROVER} / {DEMO_PASSWORD}); `airlock status`, `airlock approvals list --all`, "
                  "`airlock down`.", highlight=False)


async def _first_pending(engine: Engine, handle: WorkflowHandle) -> ApprovalView:
    """Wait until the run's first approval is in the inbox."""
    for _ in range(600):
        with Session(engine) as session:
            pending = repo.list_approvals(session, run_id=handle.id)
        if pending:
            return pending[0]
        description = await handle.describe()
        if description.status and description.status.name != "RUNNING":
            raise StackError(f"run {handle.id} ended ({description.status.name}) before asking for approval")
        await asyncio.sleep(0.1)
    raise StackError(f"run {handle.id} did not ask for approval within 60s; see .airlock/logs/worker.log")
