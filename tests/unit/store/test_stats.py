"""``airlock stats`` counts the times OPA was asked again and the decisions denied as policy unavailable."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session
from typer.testing import CliRunner

from engine.boundary import unavailable_decision
from engine.cli import app
from engine.runtime.payloads import PolicyDecision
from engine.store import decisions
from engine.store.db import Database
from engine.store.stats import stats
from engine.store.tables import PolicyDecisionRow, RunRow
from tests.helpers import ROOT

RUN = "run-1"


def _decided(url: str) -> Database:
    """One run with four decisions: asked once, asked three times, denied after four tries, and one stored
    before decisions counted their attempts."""
    db = Database(url).ready()
    made = [PolicyDecision(allow=True, outcome="allow", revision="r1"),
            PolicyDecision(allow=True, outcome="allow", revision="r1", attempts=3),
            unavailable_decision("OPA at 127.0.0.1:8181 failed: ClientConnectorError").model_copy(
                update={"attempts": 4})]
    with Session(db.engine) as session:
        session.add(RunRow(run_id=RUN, workflow="treasury-payout", version=1, requested_by="alice",
                           tenant="default", status="completed"))
        session.commit()
        for n, decision in enumerate(made):
            decisions.save_decision(session, decision_id=f"{RUN}:{n}", run_id=RUN, call_id=f"call_{n}",
                                    package="airlock.treasury_payout", document={"tool": {"name": "transfer_token"}},
                                    decision=decision, raw=None, latency_ms=1.0, digest=f"d{n}",
                                    idempotency_key=f"{RUN}:1:{n}", approval_id=None, cause="proposed")
        old = PolicyDecision(outcome="deny", reasons=["x"]).model_dump(mode="json", exclude={"attempts"})
        session.add(PolicyDecisionRow(decision_id=f"{RUN}:old", run_id=RUN, call_id="call_old", tool="t",
                                      package="airlock.treasury_payout", outcome="deny", input={}, result=old))
        session.commit()
    return db


def test_stats_count_retries_and_unavailable_decisions(tmp_path: Path) -> None:
    db = _decided(f"sqlite:///{tmp_path / 'airlock.db'}")
    boundary = db.call(stats, since=timedelta(hours=1))["boundary"]
    assert boundary["decisions"] == 4
    assert (boundary["policy_retries"], boundary["retried_decisions"], boundary["policy_unavailable"]) == (5, 2, 1)


def test_the_stats_command_shows_retries(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'airlock.db'}"
    _decided(url)
    env = {"AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_DATABASE_URL": url}
    shown = CliRunner().invoke(app, ["stats", "--since", "1h"], env=env)
    assert shown.exit_code == 0, shown.output
    assert ("policy: OPA asked again 5 time(s) in 2 decision(s), 1 denied as policy unavailable"
            in " ".join(shown.output.split()))  # as the terminal's width wraps it
    as_json = CliRunner().invoke(app, ["stats", "--since", "1h", "--json"], env=env)
    assert json.loads(as_json.output)["boundary"]["policy_retries"] == 5
