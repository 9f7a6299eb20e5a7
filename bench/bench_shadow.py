"""Shadow evaluation of many recorded decisions, on SQLite and PostgreSQL, against bare ``opa eval``.

``airlock policy shadow`` re-decides every recorded policy input with a candidate policy. Both databases are
seeded alike with ``BENCH_SHADOW_ROWS`` (default 100,000) recorded decisions of the support workflow (the
input documents at their real size: facts, provenance, the run's earlier calls), a third each allowed,
waiting for approval and denied. The candidate raises the automatic refund limit from 50 to 200, so the
refunds between them flip from ``require_approval`` to ``allow``. Measured side by side: the whole shadow
report (reading the store page by page, ``opa eval`` on the candidate's bundle, reading each answer as the
boundary does, counting) against the bare floor, the same ``opa eval`` calls on the same inputs already in
memory. The ratio is what Airlock adds to OPA's own evaluation.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session

from bench.common import ROOT, table
from engine.boundary.shadow import Candidate
from engine.local.processes import find_binary
from engine.runtime.shadow import PAGE, shadow_report
from engine.store.db import Database
from engine.store.tables import PolicyDecisionRow, RunRow, utcnow
from tests.postgres import postgres_cluster

TITLE = "Shadow evaluation: recorded decisions re-decided by a candidate policy"
ROWS = int(os.environ.get("BENCH_SHADOW_ROWS", "100000"))
PACKAGE = "airlock.support_refund"

# A recorded input of the shipped support-refund demo (docs/policies.md), the template of every row.
TEMPLATE: dict[str, Any] = {
    "version": 2,
    "workflow": {"name": "support-refund", "version": 1, "run_id": "support-refund-f44d9a658590"},
    "actor": {"requested_by": "alice", "tenant": "default"},
    "tool": {"name": "issue_refund", "consequential": True,
             "args": {"order_id": "A-1002", "amount": "180.00", "reason": "delivery two weeks late"}},
    "facts": {"order": {"exists": True, "customer_id": "cus_ana", "total": "320.00", "currency": "EUR",
                        "refunded": "0.00", "refundable": "320.00"}},
    "provenance": {
        "order_id": {"sources": [{"from": "user", "field": "input.message", "trusted": True,
                                  "context": "Please refund A-1002: the chair came two weeks late.", "call_id": None}],
                     "trusted": True},
        "amount": {"sources": [], "trusted": False}, "reason": {"sources": [], "trusted": False}},
    "run": {"step": 3, "input": {"customer_id": "cus_ana",
                                 "message": "Please refund A-1002: the chair came two weeks late."},
            "calls": {"lookup_order": 1, "issue_refund": 1},
            "previous": [
                {"call_id": "call_1_0", "tool": "lookup_order", "args": {"order_id": "A-1001"}, "outcome": "executed",
                 "result": {"order_id": "A-1001", "customer_id": "cus_ana", "item": "desk lamp", "total": "40.00",
                            "currency": "EUR", "refunded": "0.00"}, "trusted": False},
                {"call_id": "call_2_0", "tool": "issue_refund",
                 "args": {"order_id": "A-1001", "amount": "25.00", "reason": "lamp arrived with a broken shade"},
                 "outcome": "executed", "result": {"refund_id": 1, "order_id": "A-1001", "amount": "25.00",
                                                   "currency": "EUR"}, "trusted": False}]},
    "approved": None}
AMOUNTS = {"allow": ("5.00", "49.99"), "require_approval": ("50.01", "199.99", "200.01", "300.00"),
           "deny": ("600.00", "5000.00")}
FLIPS = {"50.01", "199.99"}  # require approval now; the candidate allows them


def rows(n: int) -> list[dict[str, Any]]:
    """``n`` recorded decisions (the same each time: seeded), a third of each outcome."""
    rng = random.Random(17)
    start = utcnow() - timedelta(hours=1)
    out = []
    for i in range(n):
        outcome = ("allow", "require_approval", "deny")[i % 3]
        document = copy.deepcopy(TEMPLATE)
        run_id = f"support-refund-{rng.getrandbits(48):012x}"
        document["workflow"]["run_id"] = run_id
        document["tool"]["args"]["amount"] = rng.choice(AMOUNTS[outcome])
        out.append({"decision_id": f"{run_id}:{i}", "run_id": run_id, "call_id": "call_3_0", "tool": "issue_refund",
                    "package": PACKAGE, "outcome": outcome, "input": document,
                    "result": {"outcome": outcome, "reasons": []}, "created_at": start + timedelta(milliseconds=i)})
    return out


def seed(db: Database, decided: list[dict[str, Any]]) -> None:
    with Session(db.engine) as session:
        runs = [{"run_id": r["run_id"], "workflow": "support-refund", "version": 1, "requested_by": "alice",
                 "tenant": "default", "status": "completed", "input": {}} for r in decided]
        for start in range(0, len(decided), 5000):
            session.execute(insert(RunRow), runs[start:start + 5000])
            session.execute(insert(PolicyDecisionRow), decided[start:start + 5000])
        session.commit()
    if db.engine.dialect.name == "postgresql":  # what autovacuum does within a minute of a bulk insert
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def bare(opa: str, bundle_dir: str, inputs: list[dict[str, Any]]) -> float:
    """Seconds for the same ``opa eval`` calls on the same inputs, already in memory (the floor)."""
    query = f"x := {{it.id: d | some it in input.items; v := it.input; d := data.{PACKAGE}.decision with input as v}}"
    started = time.perf_counter()
    for start in range(0, len(inputs), PAGE):
        page = inputs[start:start + PAGE]
        body = json.dumps({"items": [{"id": str(start + i), "input": d} for i, d in enumerate(page)]})
        subprocess.run([opa, "eval", "--format", "json", "--bundle", bundle_dir, "--stdin-input", query], input=body,
                       capture_output=True, text=True, check=True)
    return time.perf_counter() - started


def main() -> str:
    opa = find_binary("opa", ROOT)
    decided = rows(ROWS)
    flips = sum(1 for r in decided if r["input"]["tool"]["args"]["amount"] in FLIPS)
    results = []
    with tempfile.TemporaryDirectory(prefix="airlock-bench-shadow-") as tmp, postgres_cluster() as cluster:
        candidate_dir = Path(tmp) / "candidate"
        shutil.copytree(ROOT / "policies", candidate_dir)
        rego = candidate_dir / "support_refund.rego"
        rego.write_text(rego.read_text().replace("_auto_limit := 50", "_auto_limit := 200"))
        urls = {"SQLite": f"sqlite:///{tmp}/shadow.db", "PostgreSQL": cluster.rsplit("/", 1)[0] + "/postgres"}
        for name, url in urls.items():
            db = Database(url).migrate()
            seed(db, decided)
            with Candidate(opa, candidate_dir) as candidate:
                started = time.perf_counter()
                report = shadow_report(db, candidate, since=datetime.now(UTC) - timedelta(days=1))
                shadow_s = time.perf_counter() - started
                staged = candidate._tmp.name  # the same bundle the report used
                floor_s = bare(opa, staged, [r["input"] for r in decided])
            ok = report.decided == ROWS and dict(report.transitions) == {"require_approval->allow": flips}
            if not ok:
                print(f"{name}: transitions {dict(report.transitions)}, expected {flips} require_approval->allow")
            results.append([name, f"{report.decided:,}", f"{shadow_s:.1f}", f"{ROWS / shadow_s:,.0f}", f"{floor_s:.1f}",
                            f"{shadow_s / floor_s:.2f}×", f"{len(report.changes):,}", "yes" if ok else "NO"])
            db.engine.dispose()
    return (f"{ROWS:,} recorded decisions of the support workflow; candidate: automatic refund limit 50 → 200 "
            f"({flips:,} decisions flip). Pages of {PAGE} decisions, one `opa eval` each.\n\n"
            + table(["database", "decisions", "shadow report s", "decisions/s", "bare opa eval s",
                     "shadow / bare", "changed", "changes exactly the flips"], results))
