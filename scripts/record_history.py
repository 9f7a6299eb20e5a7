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
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from sqlmodel import Session

from engine.boundary.identity import Authority
from engine.config import Settings
from engine.local import processes as stack
from engine.runtime.runs import decide_approval, start_run
from engine.runtime.temporal import connect
from engine.runtime.worker import build_worker
from engine.spec import load_spec
from engine.store import repo, users
from engine.store.db import make_engine, migrate

ROOT = Path(__file__).resolve().parent.parent


def _workflows(tmp: Path, scripted_port: int, fallback: bool) -> Path:
    """The shipped workflows in a folder the recording worker serves; with ``fallback`` the refund
    workflow's primary model answers 500 and the scripted model, its fallback, answers instead."""
    folder = tmp / "workflows"
    shutil.copytree(ROOT / "workflows", folder, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    if fallback:
        body = yaml.safe_load((folder / "support_refund.yaml").read_text())
        script = body["model"]["script"]
        body["model"] = {**body["model"], "provider": "openai", "name": str(folder / script), "timeout_s": 5.0,
                         "base_url": f"http://127.0.0.1:{scripted_port}/fault/500/v1",
                         "fallbacks": [{"provider": "scripted", "price_in_per_1k": 0.1, "price_out_per_1k": 0.2}]}
        (folder / "support_refund.yaml").write_text(yaml.safe_dump(body))
    return folder


async def record(target: Path, fallback: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="airlock-record-"))
    ports = [stack.free_port() for _ in range(4)]
    procs = [stack.launch_temporal(ports[0], ports[1], tmp / "t.db", tmp / "t.log"),
             stack.launch_opa(ports[2], ROOT / "policies", tmp / "opa.log"),
             stack.launch_scripted(ports[3], tmp / "llm.log")]
    try:
        settings = Settings(project_dir=ROOT, state_dir=tmp, workflows_dir=_workflows(tmp, ports[3], fallback),
                            temporal={"address": f"127.0.0.1:{ports[0]}"},
                            opa={"url": f"http://127.0.0.1:{ports[2]}"},
                            llm={"scripted_url": f"http://127.0.0.1:{ports[3]}/v1"})
        sys.path.insert(0, str(ROOT))
        from tools import support

        support.reset_demo_ledger(settings.db_url)
        engine = make_engine(settings.db_url)
        migrate(settings.db_url)
        with Session(engine) as session:
            users.add_user(session, name="alice", password="recording-only", roles=["support"])
            bob = users.add_user(session, name="bob", password="recording-only", roles=["support-leads"])
        signer = Authority.from_settings(settings)
        client = await connect(settings.temporal)
        spec = load_spec(settings.workflows_dir / "support_refund.yaml", project_dir=ROOT)
        async with build_worker(client, settings):
            handle = await start_run(client, signer, task_queue=settings.temporal.task_queue, workflow=spec,
                                     run_input={"customer_id": "cus_ana", "message": "refunds please"},
                                     requested_by="alice",
                                     run_id="support-refund-recorded" + ("-fallback" if fallback else ""))
            while True:
                with Session(engine) as session:
                    items = repo.list_approvals(session, run_id=handle.id)
                if items:
                    break
                await asyncio.sleep(0.1)
            await decide_approval(client, engine, signer, approval_id=items[0].approval_id, decision="approve",
                                  approver=bob)
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
