"""The re-check before execution sees everything the policy's input holds, not only the facts.

The execute_tool activity runs in ActivityEnvironment with a real SQLite store, a stand-in OPA and tool.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalio.testing import ActivityEnvironment

from engine.errors import ChainUnavailableError
from engine.runtime.activities._actions import ActionActivities
from engine.runtime.activity_io import EvaluatePolicyInput, ExecuteToolInput
from engine.runtime.payloads import PolicyDecision, ResolvedRun, ToolCallRecord
from engine.spec import load_spec
from engine.store import repo
from engine.store.db import Database
from engine.toolkit import resolve_tool

ROOT = Path(__file__).resolve().parents[3]
RUN = "support-refund-test1"
WF_RUN = "wfrun-1"


class FakePolicy:
    """OPA stand-in: ``rule(document) -> outcome``; one revision."""

    def __init__(self, rule: Any) -> None:
        self.rule, self.documents = rule, []

    async def revision(self) -> str:
        return "rev1"

    async def evaluate(self, package: str, document: dict[str, Any]) -> tuple[PolicyDecision, Any, float]:
        self.documents.append(document)
        outcome = self.rule(document)
        return PolicyDecision(allow=outcome == "allow", outcome=outcome, revision="rev1"), {}, 0.1


WORLD: dict[str, Any] = {"sent_today": 0, "effects": [], "fail_once": False}


def _facts(args: Any, ctx: Any) -> dict[str, Any]:
    return {"sent_today": WORLD["sent_today"]}


def _pay(args: Any, ctx: Any) -> dict[str, Any]:
    if WORLD["fail_once"]:
        WORLD["fail_once"] = False
        raise ChainUnavailableError("node down before anything was signed")  # retryable: before any effect
    WORLD["effects"].append(args.order_id)
    WORLD["sent_today"] += 1
    return {"paid": args.order_id}


def _setup(tmp_path: Path, rule: Any,
           workflow_run_id: str = WF_RUN) -> tuple[ActionActivities, ResolvedRun, FakePolicy]:
    WORLD.update(sent_today=0, effects=[], fail_once=False)
    db = Database(f"sqlite:///{tmp_path / 'airlock.db'}").ready()
    spec = load_spec(ROOT / "workflows" / "support_refund.yaml", project_dir=ROOT)
    run = ResolvedRun(run_id=RUN, spec=spec, requested_by="alice", tenant="default", input={},
                      workflow_run_id=workflow_run_id)
    db.call(repo.register_run, run=run)
    policy = FakePolicy(rule)
    acts = ActionActivities(db=db, policy=policy, model=None, registry=None, verifier=None)  # type: ignore[arg-type]
    path = spec.tool("issue_refund").import_path  # type: ignore[union-attr]
    real = resolve_tool(path)
    acts._tools[path] = replace(real, func=_pay, facts=_facts, serialize=lambda a, c: "account-1")
    acts._runs[RUN] = run
    return acts, run, policy


def _env(activity_id: str, workflow_run_id: str = WF_RUN, client: Any = None) -> ActivityEnvironment:
    env = ActivityEnvironment(client=client)
    env.info = replace(env.info, workflow_id=RUN, workflow_run_id=workflow_run_id, activity_id=activity_id)
    return env


async def _decide(acts: ActionActivities, index: int, order: str, workflow_run_id: str = WF_RUN) -> ToolCallRecord:
    call = ToolCallRecord(call_id=f"c{index}", step=1, index=index, tool="issue_refund",
                          args={"order_id": order, "amount": "10.00", "reason": "late"})
    res = await _env(f"eval-{index}", workflow_run_id).run(acts.evaluate_policy,
                                                           EvaluatePolicyInput(run_id=RUN, call=call))
    return call.model_copy(update={"args": call.args, "facts": res.facts, "decision": res.decision,
                                   "digest": res.digest, "approval_id": res.approval_id, "outcome": "allowed"})


async def test_a_call_of_the_same_turn_is_decided_again_on_what_the_run_did_since(tmp_path: Path) -> None:
    """Policy reads ``run.calls``/``run.previous``: a rule 'at most one refund per run' decides two calls the
    model proposes in one turn with calls == {} for both. The second is decided again before it runs (its
    facts did not move, the run did) and does not run."""
    acts, _, policy = _setup(tmp_path, lambda d: "deny" if d["run"]["calls"].get("issue_refund") else "allow")
    WORLD["sent_today"] = 0
    first, second = await _decide(acts, 0, "A-1001"), await _decide(acts, 1, "A-1002")
    assert first.decision.outcome == second.decision.outcome == "allow"  # type: ignore[union-attr]
    await _env("exec-0").run(acts.execute_tool, ExecuteToolInput(run_id=RUN, call=first))
    WORLD["sent_today"] = 0  # facts of the second call do not move (another order)
    ran = await _env("exec-1").run(acts.execute_tool, ExecuteToolInput(run_id=RUN, call=second))
    # Policy on the input as it stands now (one refund executed) denies:
    now = dict(policy.documents[-1], run={**policy.documents[-1]["run"], "calls": {"issue_refund": 1}})
    assert policy.rule(now) == "deny"
    assert not ran.ok and WORLD["effects"] == ["A-1001"], f"second refund executed: {WORLD['effects']}"
    assert ran.stale and ran.changed == ["run"]
    assert policy.documents[-1]["run"]["calls"] == {"issue_refund": 1}


async def test_another_calls_decision_since_is_no_reason_to_decide_again(tmp_path: Path) -> None:
    """The second call of the turn was denied after the first was decided: ``run.previous`` now shows it, but
    the run did nothing since, so the first runs on its decision (no re-decision, no 'run changed' row)."""
    acts, _, policy = _setup(tmp_path, lambda d: "deny" if d["tool"]["args"]["order_id"] == "A-1002" else "allow")
    WORLD["sent_today"] = 0
    first, second = await _decide(acts, 0, "A-1001"), await _decide(acts, 1, "A-1002")
    assert second.decision.outcome == "deny"  # type: ignore[union-attr]
    assert [p["outcome"] for p in policy.documents[1]["run"]["previous"]] == ["allowed"]
    ran = await _env("exec-0").run(acts.execute_tool, ExecuteToolInput(run_id=RUN, call=first))
    assert ran.ok and WORLD["effects"] == ["A-1001"]
    assert len(policy.documents) == 2  # decided once each; the re-check found the same input
