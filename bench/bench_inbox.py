"""The inbox with many pending approvals, through the JSON API and the inbox page, on SQLite and PostgreSQL.

Issue 14, target 3: listing (first page, each filter, the role filter) and opening one item answer
within 100 ms at the 95th percentile with 10,000 approvals pending. Both databases are seeded alike
(``BENCH_INBOX_ROWS`` pending, default 10,000, plus a fifth as many already decided), served by the real
app (FastAPI's TestClient, an API token) and asked the same requests in interleaved rounds
(``BENCH_INBOX_ROUNDS``, default 100), so both backends see the same machine at the same moments.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import insert, text
from sqlmodel import Session
from temporalio.client import Client

from bench.common import ROOT, percentile, table
from engine.config import AuthSettings, Settings
from engine.errors import StackError
from engine.store import users
from engine.store.db import Database
from engine.store.tables import ApprovalRow, QueuedDecisionRow, utcnow
from engine.ui.app import create_app
from tests.postgres import postgres_cluster

TITLE = "Inbox with many pending approvals: list, filter and open (issue 14, target 3)"
ROWS = int(os.environ.get("BENCH_INBOX_ROWS", "10000"))
ROUNDS = int(os.environ.get("BENCH_INBOX_ROUNDS", "100"))
TARGET_MS = 100.0
WARMUP_ROUNDS = 3

WORKFLOWS = ("treasury_payout", "support_refund", "vendor_invoice", "payroll_batch", "grant_disbursal")
TOOLS = ("transfer_erc20", "issue_refund", "pay_invoice", "swap_tokens")
TENANTS = ("acme", "globex", "initech")  # the benchmark's user belongs to the first two
APPROVER_SETS = (["treasury-approvers"], ["support-leads"], ["treasury-approvers", "risk"], ["finance"],
                 ["risk", "support-leads"])
ROLE = "treasury-approvers"
WORKFLOW, TOOL = WORKFLOWS[0], TOOLS[0]


def _hex(rng: random.Random, digits: int) -> str:
    return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(digits))


def _approval(rng: random.Random, i: int, status: str) -> dict[str, Any]:
    """One inbox row as a worker would write it: addresses, hashes, reasons and facts at their real sizes."""
    now = utcnow()
    created = now - timedelta(seconds=i * 7 + rng.random())
    decided = status != "pending"
    return {
        "approval_id": f"apr_{rng.getrandbits(64):016x}", "run_id": f"run-{rng.getrandbits(64):016x}",
        "workflow": rng.choice(WORKFLOWS), "version": rng.randint(1, 4), "tool": rng.choice(TOOLS),
        "args": {"to": _hex(rng, 40), "token": _hex(rng, 40), "amount": f"{rng.randint(1, 10**7)}.{rng.randint(0, 99)}",
                 "memo": f"invoice INV-{rng.randint(10**5, 10**6)} for services rendered in Q{rng.randint(1, 4)}"},
        "facts": {"balance": str(rng.randint(10**6, 10**12)), "sent_today": str(rng.randint(0, 10**9)),
                  "last_tx": _hex(rng, 64), "counterparty_age_days": rng.randint(0, 900),
                  "sanctions_checked_at": created.isoformat()},
        "model_reason": "The invoice matches the purchase order and the vendor's address on file.",
        "policy_reasons": ["amount above the single-approver limit", f"new counterparty {_hex(rng, 40)}"],
        "approvers": rng.choice(APPROVER_SETS), "min_approvals": rng.choice((1, 1, 2)),
        "policy_revision": _hex(rng, 40)[2:], "digest": "sha256:" + _hex(rng, 64)[2:],
        "requested_by": rng.choice(("alice", "erin", "frank", "grace")), "tenant": rng.choice(TENANTS),
        "status": status, "votes": [{"by": "bob", "decision": "approve", "digest": "sha256:x"}] if decided else [],
        "reason": "approved by bob" if decided else None, "created_at": created,
        "expires_at": created + timedelta(days=2), "decided_at": now if decided else None,
    }


def seed(db: Database) -> tuple[str, list[str]]:
    """Fill a migrated database (the same rows each time: seeded randomness); the benchmark user's API
    token, and the ids of the pending items that user sees."""
    rng = random.Random(14)
    statuses = ["pending"] * ROWS + [rng.choice(("approved", "rejected", "expired")) for _ in range(ROWS // 5)]
    rows = [_approval(rng, i, status) for i, status in enumerate(statuses)]
    visible = [r["approval_id"] for r in rows if r["tenant"] in TENANTS[:2] and r["status"] == "pending"]
    queued = [{"key": f"dk_{i}", "approval_id": approval_id, "run_id": "run-x", "by": "carol", "action": "approve",
               "digest": "sha256:x", "status": "queued", "queued_at": utcnow()}
              for i, approval_id in enumerate(visible[::50])]
    with Session(db.engine) as session:
        for start in range(0, len(rows), 2000):
            session.execute(insert(ApprovalRow), rows[start:start + 2000])
        session.execute(insert(QueuedDecisionRow), queued)
        session.commit()
        users.add_user(session, name="bench", password="bench-password", roles=[ROLE], tenants=list(TENANTS[:2]))
        token = users.create_token(session, user="bench")
    if db.engine.dialect.name == "postgresql":  # what autovacuum does within a minute of a bulk insert
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return token, visible


async def _no_temporal() -> Client:
    raise StackError("the inbox benchmark runs without Temporal")


@dataclass
class Backend:
    """One database behind its app: the client that asks, as whom, what that user sees, and the timings."""

    name: str
    client: TestClient
    token: str
    visible: list[str]
    times: dict[str, list[float]] = field(default_factory=dict)


def app_for(url: str, state: Path) -> tuple[TestClient, str, list[str]]:
    """The UI and API app on a seeded database: a client, its token, and approval ids it may open."""
    db = Database(url).migrate()
    token, visible = seed(db)
    key = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()).decode()
    settings = Settings(project_dir=ROOT, workflows_dir=ROOT / "workflows", state_dir=state, database_url=url,
                        auth=AuthSettings(signing_key=SecretStr(key)))
    app = create_app(settings, db=db, connect=_no_temporal)
    return TestClient(app), token, visible


def cases(visible: list[str], rng: random.Random) -> dict[str, str]:
    """Each request the benchmark makes, by case name (the item opened changes every round)."""
    middle = max(1, len(visible) // 20 // 2)
    return {
        "list, first page": "/api/approvals",
        f"list, page {middle}": f"/api/approvals?page={middle}",
        f"filter workflow={WORKFLOW}": f"/api/approvals?workflow={WORKFLOW}",
        f"filter tool={TOOL}": f"/api/approvals?tool={TOOL}",
        "filter status=approved": "/api/approvals?status=approved",
        "filter status= (all)": "/api/approvals?status=",
        f"filter role={ROLE}": f"/api/approvals?role={ROLE}",
        "inbox page (HTML, with facets)": "/",
        "open one item": f"/api/approvals/{rng.choice(visible)}",
    }


def measure(backends: list[Backend]) -> None:
    """Interleaved rounds: every case on every backend in turn, after a few rounds not counted."""
    rng = random.Random(3)
    for round_no in range(WARMUP_ROUNDS + ROUNDS):
        for backend in backends:
            for case, path in cases(backend.visible, rng).items():
                started = time.perf_counter()
                response = backend.client.get(path, headers={"Authorization": f"Bearer {backend.token}"})
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{backend.name}: GET {path} answered {response.status_code}: "
                                       f"{response.text[:300]}")
                if round_no >= WARMUP_ROUNDS:
                    backend.times.setdefault(case, []).append(elapsed)


def check_total(backend: Backend) -> None:
    """The first page counts every pending item the user may see (the benchmark measures a working inbox)."""
    total = backend.client.get("/api/approvals", headers={"Authorization": f"Bearer {backend.token}"}).json()["total"]
    if total != len(backend.visible):
        raise RuntimeError(f"{backend.name}: the inbox counts {total} pending items, {len(backend.visible)} expected")


@contextmanager
def backends() -> Iterator[list[Backend]]:
    """SQLite in a temporary folder and a throwaway PostgreSQL cluster, both seeded and served."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="airlock-bench-inbox-")))
        found = []
        for name, url in (("SQLite", f"sqlite:///{folder / 'airlock.db'}"),
                          ("PostgreSQL", stack.enter_context(postgres_cluster()))):
            client, token, visible = app_for(url, folder / name)
            stack.callback(client.close)
            found.append(Backend(name, client, token, visible))
        yield found


def main() -> str:
    with backends() as found:
        for backend in found:
            check_total(backend)
        measure(found)
        rows = []
        for case in found[0].times:
            for backend in found:
                times = backend.times[case]
                p95 = percentile(times, 95)
                rows.append((case, backend.name, percentile(times, 50), p95, f"< {TARGET_MS:.0f} ms p95",
                             "pass" if p95 < TARGET_MS else "FAIL"))
        visible = len(found[0].visible)
    setup = (f"{ROWS:,} pending approvals ({visible:,} in the user's two tenants of three) and {ROWS // 5:,} "
             f"decided; {ROUNDS} rounds after {WARMUP_ROUNDS} not counted; page size 20; each request through "
             "the app with an API token.")
    return setup + "\n\n" + table(("case", "backend", "p50 ms", "p95 ms", "target", "result"), rows)
