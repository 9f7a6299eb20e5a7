"""The approval inbox in headless Chromium (Debian's), driven by Playwright, on a real stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlmodel import Session
from temporalio.client import WorkflowHandle

from engine.config import OpaSettings, Settings
from engine.runtime.temporal import connect
from tests.conftest import DevChainNode, Web
from tests.helpers import ROOT, waiting_refund
from tests.integration.test_api import make_people
from tools import support

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


async def signed_in(browser: Browser, web: Web, name: str, width: int = 1280) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(web.url) else None)
    page.outside_requests = outside  # type: ignore[attr-defined]
    await page.goto(f"{web.url}/")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(f"{name}-password")
    await page.keyboard.press("Enter")  # keyboard-usable: submit without the mouse
    await expect(page.get_by_role("heading", name="Waiting for a decision")).to_be_visible()
    return page


async def start(web: Web, tmp_path: Path, amount: str = "180.00", policy: str | None = None,
                run_input: dict[str, str] | None = None) -> tuple[str, WorkflowHandle]:
    extra = {"policy": policy} if policy else {}
    handle, item = await waiting_refund(await connect(web.settings.temporal), web.settings, tmp_path, amount,
                                        said="The chair came late.", run_input=run_input, **extra)
    return item.approval_id, handle


async def test_approve_from_the_inbox_and_run_completes(browser: Browser, web: Web, tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    page = await signed_in(browser, web, "bob")
    approval_id, handle = await start(web, tmp_path)
    row = page.get_by_role("link", name="issue_refund")
    await expect(row).to_be_visible(timeout=10_000)  # arrives without a reload
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "inbox-1280.png"), full_page=True)
    await row.click()
    await expect(page.get_by_text("180.00 EUR")).to_be_visible()
    await expect(page.get_by_text("The chair came late.")).to_be_visible()
    await expect(page.get_by_text("office chair, order of Ana Lima")).to_be_visible()  # policies/data.json
    await expect(page.get_by_text("refunds above 50 need one approval by support-leads", exact=True)).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / "detail-1280.png"), full_page=True)
    await page.get_by_label("Comment").fill("carrier confirmed the delay")
    await page.get_by_role("button", name="Approve").click()
    await expect(page.get_by_text("The action is approved.")).to_be_visible()
    await expect(page.locator("[data-status]")).to_have_text("approved")
    result = await asyncio.wait_for(handle.result(), 30)  # type: ignore[attr-defined]
    assert result.tool_calls[0].outcome == "executed"
    with Session(support.ledger(web.settings.db_url)) as session:
        assert support.refunded_total(session, "A-1002") == 180
    assert page.outside_requests == []  # type: ignore[attr-defined]


async def test_reject_with_reason_reaches_the_model(browser: Browser, web: Web, tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    approval_id, handle = await start(web, tmp_path)
    page = await signed_in(browser, web, "bob")
    await page.goto(f"{web.url}/approvals/{approval_id}")
    await page.get_by_role("button", name="Reject").click()
    await expect(page.get_by_text("A rejection needs a reason")).to_be_visible()
    await page.get_by_label("Comment").fill("customer already received a voucher")
    await page.get_by_role("button", name="Reject").click()
    await expect(page.locator("[data-status]")).to_have_text("rejected")
    result = await asyncio.wait_for(handle.result(), 30)  # type: ignore[attr-defined]
    assert result.tool_calls[0].outcome == "rejected"
    assert result.tool_calls[0].error == "customer already received a voucher"


async def test_without_the_role_one_sees_but_cannot_decide(browser: Browser, web: Web, tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    approval_id, _ = await start(web, tmp_path)
    page = await signed_in(browser, web, "dave")
    await page.get_by_role("link", name="issue_refund").click()
    await expect(page.get_by_text("180.00 EUR")).to_be_visible()
    await expect(page.locator("[data-blocked]")).to_contain_text(
        "does not hold a role that may decide this action (needs one of: support-leads)")
    assert await page.get_by_role("button", name="Approve").count() == 0


async def test_requester_is_refused_even_by_a_forged_form(browser: Browser, web: Web, tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    approval_id, _ = await start(web, tmp_path)
    page = await signed_in(browser, web, "alice", width=390)  # phone width
    await page.goto(f"{web.url}/approvals/{approval_id}")
    await expect(page.locator("[data-blocked]")).to_contain_text("started this run and cannot decide its actions")
    await page.screenshot(path=str(ARTIFACTS / "detail-390.png"), full_page=True)
    csrf = await page.evaluate("document.querySelector('input[name=csrf]').value")
    digest = (await page.locator("code.digest").inner_text()).strip()
    await page.evaluate("""([id, csrf, digest]) => {
        const f = document.createElement('form'); f.method = 'post'; f.action = `/approvals/${id}/decide`;
        for (const [k, v] of Object.entries({csrf, digest, decision: 'approve', comment: ''})) {
          const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
        document.body.appendChild(f); f.submit(); }""", [approval_id, csrf, digest])
    await expect(page.locator(".flash.error")).to_contain_text("alice started this run and cannot decide")
    await expect(page.locator("[data-status]")).to_have_text("pending")


@pytest.fixture
def quorum_policy(settings: Settings, odd_opa: str) -> None:
    """Point this test's worker at the OPA whose policy needs two approvers (before `web` starts it)."""
    settings.opa = OpaSettings(url=odd_opa)


async def test_quorum_of_two(browser: Browser, quorum_policy: None, web: Web, tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    from engine.store import users
    from engine.store.db import make_engine

    with Session(make_engine(web.settings.db_url)) as session:
        for name in ("bob", "carol"):
            users.add_user(session, name=name, password=f"{name}-password", roles=["treasury-ops"])
    approval_id, handle = await start(web, tmp_path, policy="airlock.test.quorum")
    for name, expected in (("bob", "Recorded: 1 of 2 approvals."), ("carol", "The action is approved.")):
        page = await signed_in(browser, web, name)
        await page.goto(f"{web.url}/approvals/{approval_id}")
        await page.get_by_role("button", name="Approve").click()
        await expect(page.get_by_text(expected)).to_be_visible()
    result = await asyncio.wait_for(handle.result(), 30)  # type: ignore[attr-defined]
    assert sorted(v.by for v in result.tool_calls[0].votes) == ["bob", "carol"]


async def test_inbox_at_phone_width(browser: Browser, web: Web, tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    await start(web, tmp_path)
    page = await signed_in(browser, web, "bob", width=390)
    await expect(page.get_by_role("link", name="issue_refund")).to_be_visible()
    overflow = await page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    assert not overflow
    await page.screenshot(path=str(ARTIFACTS / "inbox-390.png"), full_page=True)
    await page.get_by_role("link", name="Stats").click()  # charts scroll inside their cards, not the page
    await expect(page.get_by_role("heading", name="How runs went")).to_be_visible()
    assert not await page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    await page.screenshot(path=str(ARTIFACTS / "stats-390.png"), full_page=True)


async def test_edit_before_approving(browser: Browser, web: Web, tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    approval_id, handle = await start(web, tmp_path)
    page = await signed_in(browser, web, "bob")
    await page.goto(f"{web.url}/approvals/{approval_id}")
    await page.get_by_text("Correct the arguments instead").click()
    await page.get_by_label("Amount", exact=True).fill("40.00")
    await page.get_by_label("Why you corrected it").fill("agreed 40 on the phone")
    await page.get_by_role("button", name="Submit corrected action").click()
    await expect(page.get_by_text("Edited: the corrected action goes through validation")).to_be_visible()
    result = await asyncio.wait_for(handle.result(), 30)  # type: ignore[attr-defined]
    [call] = result.tool_calls
    assert (call.outcome, call.args["amount"], call.edited_by) == ("executed", "40.00", "bob")
    with Session(support.ledger(web.settings.db_url)) as session:
        assert support.refunded_total(session, "A-1002") == 40


async def test_inbox_drops_an_action_decided_elsewhere(browser: Browser, web: Web, tmp_path: Path) -> None:
    tokens = make_people(web.settings.db_url)
    approval_id, handle = await start(web, tmp_path)
    page = await signed_in(browser, web, "carol")
    row = page.get_by_role("link", name="issue_refund")
    await expect(row).to_be_visible()
    async with httpx.AsyncClient(base_url=web.url, headers={"Authorization": f"Bearer {tokens['bob']}"}) as http:
        digest = (await http.get(f"/api/approvals/{approval_id}")).json()["approval"]["digest"]
        decided = await http.post(f"/api/approvals/{approval_id}/decision",
                                  json={"decision": "approve", "digest": digest})
        assert decided.status_code == 200
    await expect(row).to_have_count(0, timeout=10_000)  # gone without a reload
    await expect(page.get_by_text("Nothing waits for a decision.")).to_be_visible()


async def test_a_payment_approval_shows_the_simulated_balance_changes(
        browser: Browser, chain_settings: Settings, devchain: DevChainNode, web: Web, tmp_path: Path) -> None:
    from engine.local.devchain import dev_address
    from engine.store import users
    from engine.store.db import make_engine
    from tests.integration.test_treasury import waiting_payment

    with Session(make_engine(web.settings.db_url)) as session:
        users.add_user(session, name="erin", password="erin-password", roles=["treasury-approvers"])
    page = await signed_in(browser, web, "erin")
    handle, _ = await waiting_payment(await connect(web.settings.temporal), web.settings, tmp_path)
    row = page.get_by_role("link", name="transfer_token")
    await expect(row).to_be_visible(timeout=15_000)
    await row.click()
    await expect(page.locator("[data-simulation]")).to_have_attribute("data-simulation", "ok")
    changes = page.locator("[data-balance-changes] tbody tr")
    await expect(changes).to_have_count(2)
    await expect(changes.nth(0)).to_contain_text("Treasury (demo account)")  # name from policies/data.json
    await expect(changes.nth(0)).to_contain_text("-4800")
    await expect(changes.nth(1)).to_contain_text("Globex Logistics")
    await expect(changes.nth(1)).to_contain_text("+4800")
    await page.screenshot(path=str(ARTIFACTS / "payment-detail-1280.png"), full_page=True)
    # While it waits, the run page says so, and for whom (asked of the run itself).
    await page.get_by_role("link", name="full timeline").click()
    await expect(page.locator("[data-progress]")).to_contain_text("waiting for approval")
    await expect(page.locator("[data-waiting]")).to_contain_text(
        "transfer_token waits for 1 approval(s) from treasury-approvers: 0/1 so far")
    await page.locator("[data-waiting] a").click()
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("[data-status]")).to_have_text("approved")
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.tool_calls[0].outcome == "executed"
    assert devchain.chain.token_balance(devchain.token, dev_address(3)) == 4800 * 10**6
    # The run page: every recorded step, the transaction hash among them.
    await page.get_by_role("link", name="full timeline").click()
    await expect(page.locator("[data-status]")).to_have_text("completed")
    await expect(page.locator("[data-progress]")).to_have_count(0)  # a finished run has no "now"
    rows = page.locator("[data-timeline] tbody tr")
    kinds = [await rows.nth(i).get_attribute("data-kind") for i in range(await rows.count())]
    assert kinds[0] == "model" and {"policy", "approval", "execution"} <= set(kinds) and kinds.count("model") == 2
    await expect(page.locator("[data-kind=execution]")).to_contain_text(result.tool_calls[0].result["tx_hash"])
    await expect(page.locator("[data-model-calls]")).to_have_text("2")
    await page.screenshot(path=str(ARTIFACTS / "run-1280.png"), full_page=True)
    # The stats page: the same figures as `airlock stats`, plotted.
    from datetime import timedelta

    from engine.store.stats import stats

    await page.get_by_role("link", name="Stats").click()
    await expect(page.get_by_role("heading", name="How runs went")).to_be_visible()
    with Session(make_engine(web.settings.db_url)) as session:
        figures = stats(session, since=timedelta(hours=24))
    await expect(page.locator("[data-figure=runs]")).to_have_text(str(figures["runs"]["total"]))
    await expect(page.locator("[data-figure=model_calls]")).to_have_text(str(figures["model"]["calls"]))
    await expect(page.locator("[data-figure=escalations]")).to_have_text(str(figures["boundary"]["escalations"]))
    runs_chart = page.locator("figure[data-chart^='Runs per hour'] rect")
    completed = figures["runs"]["by_status"]["completed"]
    titles = [await runs_chart.nth(i).get_attribute("data-value") for i in range(await runs_chart.count())]
    assert sum(int(t.split(": ")[1].split()[0]) for t in titles if t.endswith(" completed")) == completed
    latency = page.locator("figure[data-chart^='Latency'] rect")
    await expect(latency).to_have_count(6)  # model, policy, execution × p50, p95
    assert await page.locator("svg[role=img]").count() == 5
    await page.screenshot(path=str(ARTIFACTS / "stats-1280.png"), full_page=True)
    await page.get_by_label("Workflow").select_option("treasury-payout")
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_role("heading", name="How runs went")).to_contain_text("treasury-payout")
    with Session(make_engine(web.settings.db_url)) as session:
        only = stats(session, since=timedelta(hours=24), workflow="treasury-payout")
    await expect(page.locator("[data-figure=runs]")).to_have_text(str(only["runs"]["total"]))
    assert only["runs"]["total"] >= 1
    response = await page.goto(f"{web.url}/stats?since=yesterday")
    assert response is not None and response.status == 422
    assert page.outside_requests == []  # type: ignore[attr-defined]


async def test_the_approver_sees_where_each_argument_came_from_at_phone_width(browser: Browser, web: Web,
                                                                              tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    # the order id inside one long unbroken run of characters: its context must wrap, not widen the page
    message = ("My order arrived broken. Reference: " + "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC" * 2
               + "/A-1002/" + "GB33BUKB20201555555555" * 4 + " Thanks!")
    approval_id, _ = await start(web, tmp_path, run_input={"customer_id": "cus_ana", "message": message})
    page = await signed_in(browser, web, "bob", width=390)
    await page.goto(f"{web.url}/approvals/{approval_id}")
    origins = page.locator("[data-origin]")
    await expect(origins).to_have_count(3)  # order id, amount, reason
    await expect(origins.nth(0)).to_have_attribute("data-origin", "trusted")
    await expect(origins.nth(0)).to_contain_text("user · input.message")
    await expect(origins.nth(0)).to_contain_text("/A-1002/GB33BUKB")
    await expect(origins.nth(1)).to_have_attribute("data-origin", "untrusted")
    await expect(origins.nth(1)).to_contain_text("the model made it up")
    assert not await page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
    await page.screenshot(path=str(ARTIFACTS / "detail-provenance-390.png"), full_page=True)


async def test_treasury_pages_fit_a_phone(browser: Browser, chain_settings: Settings, devchain: DevChainNode,
                                          web: Web, tmp_path: Path) -> None:
    """A treasury payment waiting for approval, with its long addresses, token contract, facts and the invoice
    note it was read from: the inbox, the approval page, the run page, the stats page and the sign-in page fit
    390 px without scrolling sideways, and at desktop width too."""
    from tests.integration.test_treasury import GLOBEX, pay, treasury_spec

    make_people(web.settings.db_url)
    from engine.store import users
    from engine.store.db import make_engine

    with Session(make_engine(web.settings.db_url)) as session:
        users.add_user(session, name="erin", password="erin-password", roles=["treasury-approvers"])
    spec = treasury_spec(tmp_path, {"name": "read_invoice", "args": {"invoice_id": "INV-2042"}},
                         pay(GLOBEX, "4800.00", memo="INV-2042 Q4 freight " + "0x" + "ab" * 32))
    from tests.helpers import start_run, wait_for_inbox

    handle = await start_run(await connect(web.settings.temporal), task_queue=web.settings.temporal.task_queue,
                             spec=spec, run_input={"message": "Pay invoice INV-2042."}, requested_by="alice")
    [item] = await wait_for_inbox(web.settings.db_url, handle.id)
    for width in (390, 1280):
        page = await signed_in(browser, web, "erin", width=width)
        wide: dict[str, int] = {}
        for name, path in (("inbox", "/"), ("approval", f"/approvals/{item.approval_id}"),
                           ("run", f"/runs/{handle.id}"), ("stats", "/stats?since=1h")):
            await page.goto(f"{web.url}{path}")
            await page.wait_for_load_state("networkidle")
            await page.screenshot(path=str(ARTIFACTS / f"treasury-{name}-{width}.png"), full_page=True)
            scroll = await page.evaluate("document.documentElement.scrollWidth")
            if scroll > width + 1:
                wide[name] = scroll
        assert wide == {}, f"pages wider than {width} px: {wide}"
        signed_out = await (await browser.new_context(viewport={"width": width, "height": 900})).new_page()
        await signed_out.goto(f"{web.url}/login")
        assert await signed_out.evaluate("document.documentElement.scrollWidth") <= width + 1
    page = await signed_in(browser, web, "erin", width=390)
    await page.goto(f"{web.url}/approvals/{item.approval_id}")
    to = page.locator("dl.args dd").filter(has_text=GLOBEX).first  # whole, wrapped inside its box
    await expect(to).to_be_visible()
    box = await to.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    await handle.terminate()


async def test_a_saved_policy_change_reads_at_phone_width_and_shows_only_the_readers_tenants(
        browser: Browser, web: Web) -> None:
    """A saved shadow report with treasury payments (long addresses, a memo with a transaction hash): its list and
    its page fit 390 px and 1280 px; the filter by transition works; a change in another tenant's run is counted
    in the figures but not shown."""
    from engine.store.db import make_engine
    from engine.store.shadow_reports import save_report

    make_people(web.settings.db_url)
    globex, acme = "0x90F79bf6EB2c4f870365E785982E1f101E93b906", "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"

    def payment(n: int, to: str, amount: str, old: str, new: str, tenant: str) -> dict[str, object]:
        return {"decision_id": f"treasury-payout-{n:012x}:1", "run_id": f"treasury-payout-{n:012x}", "tenant": tenant,
                "workflow": "treasury-payout", "tool": "transfer_token",
                "args": {"chain_id": 31337, "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "to": to,
                         "amount": amount, "memo": "INV-2042 Q4 freight " + "0x" + "ab" * 32},
                "old": old, "new": new, "old_reasons": [f"recipient {to} is not on the payee list"],
                "new_reasons": [f"payments above 1000 tUSD need one approval by treasury-approvers ({to})"]}

    changes = [payment(1, globex, "4800.00", "deny", "require_approval", "default"),
               payment(2, acme, "250.00", "require_approval", "allow", "default"),
               payment(3, globex, "9999.00", "deny", "allow", "elsewhere")]
    with Session(make_engine(web.settings.db_url)) as session:
        report_id = save_report(session, label="policies: payee list from the vendor registry (pull request 418)",
                                revision="sha256:09713dff2a3f89b5", since="7d", workflow="treasury-payout",
                                decided=1200, same=1197, reasons_changed=4,
                                transitions={"deny->allow": 1, "deny->require_approval": 1,
                                             "require_approval->allow": 1},
                                failing={"deny->allow": 1}, saved_by="ci", changes=changes)
    for width in (390, 1280):
        page = await signed_in(browser, web, "bob", width=width)
        await page.get_by_role("link", name="Policy changes").click()
        await expect(page.locator(f"[data-report='{report_id}']")).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= width + 1
        await page.get_by_role("link", name="pull request 418").click()
        await expect(page.locator("[data-figure='changed']")).to_have_text("3")
        await expect(page.locator("[data-failing]")).to_contain_text("deny->allow (1)")
        shown = page.locator("[data-change]")
        await expect(shown).to_have_count(2)  # the third is another tenant's run
        await expect(page.get_by_text("treasury-payout-000000000003")).to_have_count(0)
        await page.screenshot(path=str(ARTIFACTS / f"shadow-report-{width}.png"), full_page=True)
        assert await page.evaluate("document.documentElement.scrollWidth") <= width + 1
        await page.locator("[data-transition='require_approval->allow']").click()
        await expect(shown).to_have_count(1)
        await expect(shown.first).to_contain_text("250.00")
    response = await page.goto(f"{web.url}/shadow/{report_id}?transition=allow->sideways")
    assert response is not None and response.status == 422
    assert (await page.goto(f"{web.url}/shadow/shr_nope")).status == 404  # type: ignore[union-attr]


async def test_the_requester_cancels_a_run_from_its_page_at_phone_width(browser: Browser, web: Web,
                                                                       tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    approval_id, handle = await start(web, tmp_path)  # alice's run, waiting for a support lead
    other = await signed_in(browser, web, "dave", width=390)  # support, not the requester: no form
    await other.goto(f"{web.url}/runs/{handle.id}")
    await expect(other.locator("[data-status]")).to_have_text("running")
    assert await other.locator("[data-cancel]").count() == 0
    page = await signed_in(browser, web, "alice", width=390)
    await page.goto(f"{web.url}/runs/{handle.id}")
    form = page.locator("[data-cancel]")
    await expect(form).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # the form fits a phone
    await page.get_by_role("button", name="Cancel run").click()  # no reason: the browser asks for one
    await expect(page.locator("[data-status]")).to_have_text("running")
    await page.get_by_label("Why").fill("the customer withdrew the request")
    await page.get_by_role("button", name="Cancel run").click()
    await expect(page.get_by_text("Cancelling: the run closes what waits for people")).to_be_visible()
    for _ in range(50):  # the run records itself cancelled moments later
        await page.reload()
        if await page.locator("[data-status]").inner_text() == "cancelled":
            break
        await asyncio.sleep(0.2)
    await expect(page.locator("[data-status]")).to_have_text("cancelled")
    await expect(page.locator(".heading")).to_contain_text(
        "cancelled: alice cancelled it: the customer withdrew the request")
    assert await page.locator("[data-cancel]").count() == 0  # ended: nothing to cancel
    await page.goto(f"{web.url}/approvals/{approval_id}")
    await expect(page.locator("[data-status]")).to_have_text("expired")
    # A forged form from a page without the session's CSRF token is refused.
    async with httpx.AsyncClient(base_url=web.url) as http:
        forged = await http.post(f"/runs/{handle.id}/cancel", data={"reason": "x"},
                                 cookies={c["name"]: c["value"] for c in await page.context.cookies()})
    assert forged.status_code == 403
