"""Record the history of one support-refund run for the Replayer test.

Run after changing the workflow on purpose (a new history guards the new
shape; keep the old ones while runs of that shape may still exist):

    .venv/bin/python scripts/record_history.py tests/histories/support_refund_v1.json

With ``--fallback`` the primary model endpoint answers 500 on every call and
the scripted model, listed as its fallback, answers instead:

    .venv/bin/python scripts/record_history.py --fallback tests/histories/support_refund_fallback.json
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from engine import stack
from engine.config import Settings
from engine.runs import decide_approval, start_run
from engine.spec import EndpointSpec, load_spec
from engine.store import repo
from engine.store.db import make_engine
from engine.store.users import Approver
from engine.temporal import connect
from engine.worker import build_worker
from sqlmodel import Session

ROOT = Path(__file__).resolve().parent.parent


async def record(target: Path, fallback: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="airlock-record-"))
    ports = [stack.free_port() for _ in range(4)]
    procs = [stack.launch_temporal(ports[0], ports[1], tmp / "t.db", tmp / "t.log"),
             stack.launch_opa(ports[2], ROOT / "policies", tmp / "opa.log"),
             stack.launch_scripted(ports[3], tmp / "llm.log")]
    try:
        settings = Settings(project_dir=ROOT, state_dir=tmp, temporal={"address": f"127.0.0.1:{ports[0]}"},
                            opa={"url": f"http://127.0.0.1:{ports[2]}"},
                            llm={"scripted_url": f"http://127.0.0.1:{ports[3]}/v1"})
        sys.path.insert(0, str(ROOT))
        from tools import support

        support.reset_demo_ledger(settings.db_url)
        client = await connect(settings.temporal)
        spec = load_spec(ROOT / "workflows/support_refund.yaml", project_dir=ROOT)
        if fallback:
            failing = spec.model.model_copy(update={
                "provider": "openai", "name": spec.model.script, "timeout_s": 5.0,
                "base_url": f"http://127.0.0.1:{ports[3]}/fault/500/v1",
                "fallbacks": [EndpointSpec(provider="scripted", price_in_per_1k=0.1, price_out_per_1k=0.2)]})
            spec = spec.model_copy(update={"model": failing})
        async with build_worker(client, settings):
            handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec,
                                     run_input={"customer_id": "cus_ana", "message": "refunds please"},
                                     requested_by="alice", run_id="support-refund-recorded" + ("-fallback" if fallback else ""))
            engine = make_engine(settings.db_url)
            while True:
                with Session(engine) as session:
                    items = repo.list_approvals(session, run_id=handle.id)
                if items:
                    break
                await asyncio.sleep(0.1)
            await decide_approval(client, engine, approval_id=items[0].approval_id, decision="approve",
                                  approver=Approver(name="bob", roles=["support-leads"]))
            await handle.result()
        history = await handle.fetch_history()
        target.write_text(history.to_json())
        print(f"wrote {target} ({len(history.events)} events)")
    finally:
        for proc in procs:
            stack.stop_process(proc)


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(record(Path(args[-1]), fallback="--fallback" in args))
