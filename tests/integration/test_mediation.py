"""Complete mediation: each attack on the run's trust in its callers, against the real stack.

Every test plays the attacker with what an attacker has (a Temporal client, a
user account, a spec file, a worker of its own on the task queue) and shows
that nothing executes and the refusal says why; the honest path is in
test_runs, test_edit, test_api and test_treasury.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ActivityError
from temporalio.worker import Worker

from engine.boundary.identity import Authority
from engine.config import Settings
from engine.errors import SpecError
from engine.runtime.payloads import RunResult
from engine.runtime.worker import build_worker
from engine.store.db import Database, make_engine
from engine.store.tables import PersonAssertionRow
from tests.conftest import DevChainNode
from tests.helpers import (
    authority,
    decide_approval,
    edit_action,
    lead,
    refund,
    start_run,
    wait_for_inbox,
    waiting_refund,
    write_spec,
)
from tests.integration.test_treasury import GLOBEX, OPS, STRANGER, balance, pay, treasury_spec, tusd
from tools import support

with workflow.unsafe.imports_passed_through():
    from engine.runtime.activity_io import ExecuteToolInput, ExecuteToolResult
    from engine.runtime.payloads import PolicyDecision, ToolCallRecord

pytestmark = pytest.mark.integration
CUSTOMER = {"customer_id": "cus_ana"}


def refunds(db_url: str) -> list[tuple[str, Decimal]]:
    with Session(support.ledger(db_url)) as session:
        return [(r.order_id, r.amount) for r in session.exec(select(support.Refund)).all()]


async def raw_start(client: Client, settings: Settings, payload: dict[str, Any]) -> RunResult:
    """Start a run from a plain Temporal client with whatever payload an attacker chooses."""
    handle = await client.start_workflow("AgentRunWorkflow", payload, id=payload.get("run_id") or uuid.uuid4().hex,
                                         task_queue=settings.temporal.task_queue, result_type=RunResult)
    return await handle.result()


# --- definitions belong to the worker -------------------------------------------------------------


async def test_a_spec_naming_os_system_as_a_hook_never_runs(client: Client, settings: Settings,
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(SpecError, match=r"evil.yaml:\d+: input_guard.redact: os:system: only the project's own"):
        write_spec(tmp_path, [{"content": "hi"}], spec_file="evil.yaml", input_guard={"redact": "os:system"},
                   name="evil")  # the file stays in the worker's folder, as an attacker would leave it
    async with build_worker(client, settings):  # the worker skips the file; a request naming it is refused
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec="evil",
                                 run_input={"message": f"touch {marker}"})
        named = await handle.result()
    assert named.status == "failed" and "no definition of evil" in (named.reason or "")
    assert not marker.exists()


async def test_a_forged_definition_in_the_request_is_refused_and_nothing_is_paid(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    settings = chain_settings
    spec = treasury_spec(tmp_path, pay(STRANGER, "75"))
    forged = spec.model_dump(mode="json")
    forged["tool_specs"] = [{**t, "name": "get_balance", "consequential": False} if t["name"] == "transfer_token"
                            else t for t in forged["tool_specs"]]
    run_id = f"treasury-{uuid.uuid4().hex[:8]}"
    payload = {"workflow": spec.name, "spec": forged, "input": {}, "requested_by": "alice", "run_id": run_id,
               "credential": authority().start(user="alice", run_id=run_id, workflow=spec.name, tenant="default",
                                               run_input={})}
    async with build_worker(client, settings):
        result = await raw_start(client, settings, payload)
    assert result.status == "failed" and "malformed run request" in (result.reason or "")
    assert "spec" in (result.reason or "") and "Extra inputs are not permitted" in (result.reason or "")
    assert balance(devchain, STRANGER) == 0 and devchain.chain.nonce(devchain.treasury) == 0


async def test_a_started_run_keeps_its_definition_when_the_file_changes(client: Client, settings: Settings,
                                                                      tmp_path: Path) -> None:
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        handle, item = await waiting_refund(client, settings, tmp_path, amount="120.00")
    # The definition changes (another tool set and prompt; the old file is gone) and a new worker starts:
    # the run goes on as it began, from the definition the worker recorded when it started.
    (tmp_path / "spec.yaml").unlink()
    changed = write_spec(tmp_path, [{"content": "other"}], "changed.yaml", system_prompt="A different prompt.",
                         tools=["tools.support:lookup_order"])
    async with build_worker(client, settings):
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=lead("bob"))
        result = await handle.result()
        fresh = await (await start_run(client, task_queue=settings.temporal.task_queue, spec=changed,
                                       run_input=CUSTOMER)).result()
    assert result.status == "completed" and result.tool_calls[0].outcome == "executed"
    assert refunds(settings.db_url) == [("A-1002", Decimal("120.00"))]
    assert fresh.status == "completed" and fresh.output == "other"
    with Session(db.engine) as session:
        from engine.store.tables import RunRow

        hashes = {r.run_id: r.definition_hash for r in session.exec(select(RunRow)).all()}
    assert hashes[fresh.run_id] == changed.definition_hash != hashes[handle.id]


@pytest.mark.parametrize("credential, expected", [
    ("", "no signed assertion"),
    ("not-a-jwt", "is not valid"),
    ("forged", "Signature verification failed"),
    ("other-run", "not for starting run"),
    ("other-input", "is for another input, version or definition pin"),
    ("ghost", "no user 'ghost-of-bob'"),
    ("other-tenant", "alice does not belong to tenant 'acme'"),
])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_run_without_a_valid_start_assertion_is_refused(client: Client, settings: Settings,
                                                                tmp_path: Path, credential: str,
                                                                expected: str) -> None:
    write_spec(tmp_path, [{"tool_calls": [refund("A-1001", "5.00")]}, {"content": "done"}])
    run_id, user, tenant = f"refund-test-{uuid.uuid4().hex[:8]}", "alice", "default"
    token = {"": "", "not-a-jwt": "not-a-jwt",
             "forged": Authority(Ed25519PrivateKey.generate()).start(user=user, run_id=run_id, workflow="refund-test",
                                                                     tenant=tenant, run_input=CUSTOMER),
             "other-run": authority().start(user=user, run_id="another-run", workflow="refund-test", tenant=tenant,
                                            run_input=CUSTOMER),
             "other-input": authority().start(user=user, run_id=run_id, workflow="refund-test", tenant=tenant,
                                              run_input={"customer_id": "cus_ben"}),
             }.get(credential)
    if credential == "ghost":
        user = "ghost-of-bob"
    if credential == "other-tenant":
        tenant = "acme"
    token = token if token is not None else authority().start(user=user, run_id=run_id, workflow="refund-test",
                                                              tenant=tenant, run_input=CUSTOMER)
    support.reset_demo_ledger(settings.db_url)
    async with build_worker(client, settings):
        result = await raw_start(client, settings, {"workflow": "refund-test", "input": CUSTOMER, "run_id": run_id,
                                                    "requested_by": user, "tenant": tenant, "credential": token})
    assert result.status == "failed" and result.reason and result.reason.startswith("refused: resolve_run failed: "
                                                                                   "AuthenticationError")
    assert expected in result.reason
    assert refunds(settings.db_url) == []


async def test_a_start_assertion_works_once(client: Client, settings: Settings, tmp_path: Path) -> None:
    write_spec(tmp_path, [{"content": "done"}])
    run_id = f"refund-test-{uuid.uuid4().hex[:8]}"
    token = authority().start(user="alice", run_id=run_id, workflow="refund-test", tenant="default",
                              run_input=CUSTOMER)
    payload = {"workflow": "refund-test", "input": CUSTOMER, "run_id": run_id, "requested_by": "alice",
               "credential": token}
    async with build_worker(client, settings):
        first = await raw_start(client, settings, payload)
        # The same id again (allowed once the first run closed): the same assertion does not start a second run.
        again = await raw_start(client, settings, payload)
    assert first.status == "completed"
    assert again.status == "failed" and "already used" in (again.reason or "")


# --- people's decisions arrive signed --------------------------------------------------------------


async def test_a_forged_approver_in_the_update_is_refused(client: Client, settings: Settings, web_less_worker: Any,
                                                          tmp_path: Path) -> None:
    handle, item = await waiting_refund(client, settings, tmp_path)
    attempts = {
        # The attack as reported: a name with a trailing space and self-declared roles.
        "by-and-roles": {"approval_id": item.approval_id, "decision": "approve", "by": "alice ",
                         "roles": ["support-leads"], "digest": item.digest, "assertion": ""},
        "no-assertion": {"approval_id": item.approval_id, "decision": "approve", "digest": item.digest,
                         "assertion": ""},
        "forged-key": {"approval_id": item.approval_id, "decision": "approve", "digest": item.digest,
                       "assertion": Authority(Ed25519PrivateKey.generate()).decide(
                           user="bob", run_id=handle.id, approval_id=item.approval_id, digest=item.digest,
                           action="approve")},
        "reject-token-used-to-approve": {"approval_id": item.approval_id, "decision": "approve",
                                         "digest": item.digest, "assertion": authority().decide(
                                             user="bob", run_id=handle.id, approval_id=item.approval_id,
                                             digest=item.digest, action="reject")},
        "requester-signed-properly": {"approval_id": item.approval_id, "decision": "approve", "digest": item.digest,
                                      "assertion": authority().decide(user="alice", run_id=handle.id,
                                                                      approval_id=item.approval_id,
                                                                      digest=item.digest, action="approve")},
        "lookalike-name": {"approval_id": item.approval_id, "decision": "approve", "digest": item.digest,
                           "assertion": authority().decide(user="bоb", run_id=handle.id,  # Cyrillic o
                                                           approval_id=item.approval_id, digest=item.digest,
                                                           action="approve")},
    }
    refusals = {}
    for name, payload in attempts.items():
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await handle.execute_update("decide_approval", payload)
        refusals[name] = str(getattr(caught.value.cause, "message", caught.value.cause))
    assert refusals["by-and-roles"] == "Failed decoding arguments"  # `by` and `roles` are not fields any more
    assert "no signed assertion" in refusals["no-assertion"]
    assert "Signature verification failed" in refusals["forged-key"]
    assert "is for reject" in refusals["reject-token-used-to-approve"]
    assert "alice started this run and cannot decide its actions" in refusals["requester-signed-properly"]
    assert "no user 'bоb'" in refusals["lookalike-name"]
    assert (await handle.query("get_pending_actions"))[0]["status"] == "pending"
    # The honest decision still goes through, and its assertion cannot be replayed.
    honest = authority().decide(user="bob", run_id=handle.id, approval_id=item.approval_id, digest=item.digest,
                                action="approve")
    payload = {"approval_id": item.approval_id, "decision": "approve", "digest": item.digest, "assertion": honest}
    assert (await handle.execute_update("decide_approval", payload))["status"] == "approved"
    result = await handle.result()
    assert [(c.tool, c.outcome) for c in result.tool_calls] == [("issue_refund", "executed")]
    with Session(make_engine(settings.db_url)) as session:
        used = session.exec(select(PersonAssertionRow).where(PersonAssertionRow.approval_id == item.approval_id)).all()
    assert [(u.subject, u.action) for u in used] == [("bob", "approve")]


@pytest.fixture
async def web_less_worker(client: Client, settings: Settings) -> Any:
    """A worker on the test's task queue, for tests that drive runs from a plain Temporal client."""
    async with build_worker(client, settings) as worker:
        yield worker


async def test_an_assertion_is_good_for_one_approval_once(client: Client, settings: Settings, web_less_worker: Any,
                                                          tmp_path: Path) -> None:
    support.reset_demo_ledger(settings.db_url)
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "180.00"), refund("A-1003", "190.00")]},
                                 {"content": "done"}])
    handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, run_input=CUSTOMER)
    first, second = sorted(await wait_for_inbox(settings.db_url, handle.id, 2), key=lambda i: i.args["order_id"])
    token = authority().decide(user="bob", run_id=handle.id, approval_id=first.approval_id, digest=first.digest,
                               action="approve")
    on_other = {"approval_id": second.approval_id, "decision": "approve", "digest": second.digest,
                "assertion": token}
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update("decide_approval", on_other)
    assert "not approve of " + second.approval_id in str(caught.value.cause) or \
        f"for approve of {first.approval_id}" in str(caught.value.cause)
    own = {"approval_id": first.approval_id, "decision": "approve", "digest": first.digest, "assertion": token}
    assert (await handle.execute_update("decide_approval", own))["status"] == "approved"


# --- the two-person rule, whole ---------------------------------------------------------------------


async def test_an_editor_cannot_approve_the_action_he_edited(client: Client, settings: Settings,
                                                             web_less_worker: Any, tmp_path: Path) -> None:
    db = Database(settings.db_url)
    handle, item = await waiting_refund(client, settings, tmp_path, amount="120.00")
    await edit_action(client, db, approval_id=item.approval_id, approver=lead("bob"),
                      args={**item.args, "amount": "60.00"}, comment="agreed 60")
    edited = next(i for i in await wait_for_inbox(settings.db_url, handle.id, 1) if i.approval_id != item.approval_id)
    from engine.errors import ApprovalError

    with pytest.raises(ApprovalError, match="bob edited this action and cannot decide it"):
        await decide_approval(client, db, approval_id=edited.approval_id, decision="approve",
                              approver=lead("bob"))
    await decide_approval(client, db, approval_id=edited.approval_id, decision="approve", approver=lead("carol"))
    result = await handle.result()
    assert [(c.outcome, c.args["amount"], c.editors) for c in result.tool_calls] == [("executed", "60.00", ["bob"])]
    assert refunds(settings.db_url) == [("A-1002", Decimal("60.00"))]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("approver_role", [None, "support-leads"])
async def test_approval_with_no_approvers_falls_back_to_the_spec_or_is_denied(
        client: Client, settings: Settings, odd_opa: str, tmp_path: Path, approver_role: str | None) -> None:
    settings.opa.url = odd_opa
    support.reset_demo_ledger(settings.db_url)
    approval = {"timeout": "1h", **({"approver_role": approver_role} if approver_role else {})}
    spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", "30.00")]}, {"content": "done"}],
                      policy="airlock.test.noapprovers", approval=approval)
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, run_input=CUSTOMER)
        if approver_role is None:
            result = await handle.result()
        else:
            [item] = await wait_for_inbox(settings.db_url, handle.id)
            assert item.approvers == ["support-leads"]
            from engine.errors import ApprovalError
            from engine.store.users import Approver

            with pytest.raises(ApprovalError, match="dave does not hold a role that may decide"):
                await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id,
                                      decision="approve", approver=Approver(name="dave", roles=["support"]))
            await decide_approval(client, Database(settings.db_url), approval_id=item.approval_id,
                                  decision="approve", approver=lead("bob"))
            result = await handle.result()
    [call] = result.tool_calls
    if approver_role is None:
        assert call.outcome == "denied" and call.decision.reasons[0] == "policy unavailable"
        assert "names no approvers" in call.decision.reasons[1] and refunds(settings.db_url) == []
    else:
        assert call.outcome == "executed" and refunds(settings.db_url) == [("A-1002", Decimal("30.00"))]


# --- execution checks its own authority --------------------------------------------------------------


@workflow.defn(name="RogueWorkflow", sandboxed=False)
class RogueWorkflow:
    """What someone with Temporal access and a worker of their own could schedule: an "allowed" call."""

    @workflow.run
    async def run(self, run_id: str, call: dict, queue: str) -> str:
        try:
            result = await workflow.execute_activity(
                "execute_tool", ExecuteToolInput(run_id=run_id, call=ToolCallRecord.model_validate(call)),
                result_type=ExecuteToolResult, task_queue=queue, start_to_close_timeout=timedelta(seconds=30))
        except ActivityError as exc:
            return f"{getattr(exc.cause, 'type', '')}: {getattr(exc.cause, 'message', exc.cause)}"
        return f"executed: {result.model_dump_json()}"


async def test_a_rogue_workflow_cannot_execute_without_a_recorded_decision(client: Client, settings: Settings,
                                                                          web_less_worker: Any,
                                                                          tmp_path: Path) -> None:
    handle, item = await waiting_refund(client, settings, tmp_path, amount="180.00")
    decided = PolicyDecision(allow=True, outcome="allow", revision=item.policy_revision)
    forged = {"call_id": "call_x", "step": 1, "index": 0, "tool": "issue_refund", "outcome": "allowed",
              "args": {**item.args, "amount": "300.00"}, "facts": item.facts,
              "decision": decided.model_dump(mode="json")}
    waiting = {**forged, "args": item.args}  # the real pending action, claimed to be allowed
    rogue_queue = f"rogue-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=rogue_queue, workflows=[RogueWorkflow]):
        outcomes = []
        for call in (forged, waiting):
            # The rogue workflow runs on its own queue but schedules the activity on the real one.
            outcomes.append(await client.execute_workflow(
                RogueWorkflow.run, args=[handle.id, call, settings.temporal.task_queue], id=uuid.uuid4().hex,
                task_queue=rogue_queue,
                execution_timeout=timedelta(seconds=60)))
    assert all("AuthenticationError" in o and f"was not scheduled by run {handle.id}" in o for o in outcomes), \
        outcomes
    assert refunds(settings.db_url) == []
    await handle.cancel()


# --- tenants --------------------------------------------------------------------------------------


async def test_daily_cost_counts_the_verified_tenant(client: Client, settings: Settings, tmp_path: Path) -> None:
    """A tenant is not a string the caller types: an unknown one is refused, so budgets cannot be dodged."""
    spec = write_spec(tmp_path, [{"content": "done"}])
    async with build_worker(client, settings):
        handle = await start_run(client, task_queue=settings.temporal.task_queue, spec=spec, run_input=CUSTOMER,
                                 tenant="fresh-tenant-" + "x" * 20)
        result = await handle.result()
    assert result.status == "failed" and "alice does not belong to tenant 'fresh-tenant-" in (result.reason or "")
    assert result.usage == {}  # refused before any model call: nothing was spent under the invented tenant


# --- limits hold under concurrency --------------------------------------------------------------------


async def test_simultaneous_approvals_never_pass_the_daily_limit_together(
        client: Client, chain_settings: Settings, devchain: DevChainNode, tmp_path: Path) -> None:
    """20,190 tUSD sent today and a 40,000 limit; three rounds of four payments approved at the same instant,
    each round sized so that exactly one more fits: one goes each time, the others are denied."""
    settings = chain_settings
    db = Database(settings.db_url)
    async with build_worker(client, settings):
        first = await start_run(client, task_queue=settings.temporal.task_queue, run_input={},
                                spec=treasury_spec(tmp_path, pay(GLOBEX, "20190"), file="first.yaml"))
        [item] = await wait_for_inbox(settings.db_url, first.id)
        await decide_approval(client, db, approval_id=item.approval_id, decision="approve", approver=OPS)
        assert (await first.result()).tool_calls[0].outcome == "executed"
        sent = 20190
        for round_, amount in enumerate((10000, 5000, 4000)):  # 30190, 35190, 39190: a second never fits
            handles = [await start_run(client, task_queue=settings.temporal.task_queue, run_input={},
                                       spec=treasury_spec(tmp_path, pay(GLOBEX, str(amount), memo=f"R{round_}-{i}"),
                                                          file=f"r{round_}-{i}.yaml"))
                       for i in range(4)]
            items = [(await wait_for_inbox(settings.db_url, h.id))[0] for h in handles]
            assert {i.facts["sent_today"] for i in items} == {str(sent)}  # each decided on the same total
            await asyncio.gather(*(decide_approval(client, db, approval_id=i.approval_id, decision="approve",
                                                   approver=OPS) for i in items))
            results = await asyncio.gather(*(h.result() for h in handles))
            calls = [r.tool_calls[0] for r in results]
            assert sorted(c.outcome for c in calls) == ["denied", "denied", "denied", "executed"], round_
            assert all(any("would pass the daily limit of 40000" in reason for reason in c.decision.reasons)
                       for c in calls if c.outcome == "denied")
            sent += amount
    assert balance(devchain, GLOBEX) == tusd(str(sent)) == tusd("39190")
    assert devchain.chain.nonce(devchain.treasury) == 4
