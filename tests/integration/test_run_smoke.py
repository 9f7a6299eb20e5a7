from __future__ import annotations

import asyncio

from sqlmodel import Session, create_engine, select

from engine.config import Settings
from engine.runs import decide_approval, pending_actions, start_run
from engine.spec import load_spec
from engine.worker import build_worker
from tests.conftest import ROOT
from tools import support


async def test_support_refund_end_to_end(client, settings: Settings):
    support.seed_demo_orders(settings.db_url)
    spec = load_spec(ROOT / "workflows/support_refund.yaml", project_dir=ROOT)
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana", "message": "refunds please"},
                                 requested_by="alice")
        for _ in range(100):
            pending = await pending_actions(client, handle.id)
            if pending:
                break
            await asyncio.sleep(0.1)
        if not pending:
            print(await asyncio.wait_for(handle.result(), 10))
        assert pending
        engine = create_engine(settings.db_url)
        await asyncio.sleep(0.5)
        await decide_approval(client, engine, approval_id=pending[0].approval_id, decision="approve", by="bob")
        result = await handle.result()
    print(result.model_dump_json(indent=1))
    assert result.status == "completed"
