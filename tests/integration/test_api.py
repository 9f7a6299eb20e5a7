"""The JSON API and the page rules on a live server (uvicorn, real Temporal, OPA, SQL)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from engine.config import Settings
from engine.store import users
from engine.store.db import Database, make_engine
from tests.conftest import Web
from tests.helpers import ROOT, refund, start_run, wait_for_inbox, waiting_refund, write_spec
from tools import support

pytestmark = pytest.mark.integration
PEOPLE = {"alice": ["support"], "bob": ["support-leads"], "carol": ["support-leads"], "dave": ["support"]}


def make_people(db_url: str) -> dict[str, str]:
    """Accounts (password = name + '-password') and an API token each."""
    with Session(make_engine(db_url)) as session:
        for name, roles in PEOPLE.items():
            users.add_user(session, name=name, password=f"{name}-password", roles=roles)
        return {name: users.create_token(session, user=name) for name in PEOPLE}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_in(http: httpx.AsyncClient, name: str) -> str:
    """Sign in through the form; return the session's CSRF token."""
    page = await http.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    response = await http.post("/login", data={"username": name, "password": f"{name}-password", "csrf": csrf,
                                               "next": "/"})
    assert response.status_code == 303, response.text
    home = await http.get("/")
    return re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]


async def test_api_needs_a_valid_identity(web: Web) -> None:
    make_people(web.settings.db_url)
    async with httpx.AsyncClient(base_url=web.url) as http:
        assert (await http.get("/api/approvals")).status_code == 401
        assert (await http.get("/api/approvals", headers=bearer("alk_forged"))).status_code == 401
        page = await http.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/"


async def test_run_over_http_with_every_approval_rule(web: Web) -> None:
    tokens = make_people(web.settings.db_url)
    support.reset_demo_ledger(web.settings.db_url)
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        created = await http.post("/api/runs", headers=bearer(tokens["alice"]), json={
            "workflow": "support_refund", "input": {"customer_id": "cus_ana", "message": "refunds"}})
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        for _ in range(200):
            status = await http.get(f"/api/runs/{run_id}", headers=bearer(tokens["bob"]))
            if status.status_code == 200 and status.json()["pending"]:
                break
            await asyncio.sleep(0.1)
        [pending] = status.json()["pending"]
        assert status.json()["run"]["requested_by"] == "alice"
        url, digest = f"/api/approvals/{pending['approval_id']}/decision", pending["digest"]

        async def decide(who: str, **body: object) -> httpx.Response:
            return await http.post(url, headers=bearer(tokens[who]), json={"digest": digest, **body})

        refused = await decide("alice", decision="approve")
        assert refused.status_code == 409 and "alice started this run" in refused.json()["error"]
        refused = await decide("dave", decision="approve")
        assert refused.status_code == 409 and "needs one of: support-leads" in refused.json()["error"]
        refused = await http.post(url, headers=bearer(tokens["bob"]),
                                  json={"decision": "approve", "digest": "sha256:stale"})
        assert refused.status_code == 409 and "reload and decide again" in refused.json()["error"]
        refused = await decide("bob", decision="reject")
        assert refused.status_code == 422 and "needs a reason" in refused.json()["error"]
        approved = await decide("bob", decision="approve", comment="late delivery confirmed")
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        again = await decide("carol", decision="approve")
        assert again.status_code == 409 and "already approved" in again.json()["error"]
        for _ in range(200):
            run = (await http.get(f"/api/runs/{run_id}", headers=bearer(tokens["bob"]))).json()["run"]
            if run["status"] == "completed":
                break
            await asyncio.sleep(0.1)
        assert run["result"]["tool_calls"][2]["votes"][0]["by"] == "bob"
        timeline = (await http.get(f"/api/runs/{run_id}/timeline", headers=bearer(tokens["dave"]))).json()
        kinds = [e["kind"] for e in timeline["timeline"]]
        assert kinds.count("model") == timeline["usage"]["model_calls"] == run["result"]["usage"]["model_calls"]
        assert {"validation", "policy", "approval", "execution"} <= set(kinds)
        progress = (await http.get(f"/api/runs/{run_id}/progress", headers=bearer(tokens["dave"]))).json()
        assert (progress["status"], progress["activity"], progress["waiting"]) == ("completed", "finished", [])
        figures = (await http.get("/api/stats", params={"since": "1h", "workflow": "support-refund"},
                                  headers=bearer(tokens["dave"]))).json()
        assert figures["runs"]["by_status"].get("completed", 0) >= 1 and figures["boundary"]["escalations"] >= 1
        for since in ("soon", "999999999d", "99999999999d", "0m"):  # the long ones overflowed a datetime: 500
            bad = await http.get("/api/stats", params={"since": since}, headers=bearer(tokens["dave"]))
            assert bad.status_code == 422 and "since: use a number and a unit" in bad.json()["error"], since
        missing = await http.get("/api/runs/no-such-run/progress", headers=bearer(tokens["dave"]))
        assert missing.status_code == 404
        detail = (await http.get(f"/api/approvals/{pending['approval_id']}", headers=bearer(tokens["dave"]))).json()
        assert [(e["actor"], e["action"], e["digest"]) for e in detail["events"]] == [("bob", "approve", digest)]
        assert detail["events"][0]["source"] == "127.0.0.1"


async def test_two_concurrent_approvals_one_wins(web: Web, tmp_path: Path) -> None:
    tokens = make_people(web.settings.db_url)
    handle, item = await waiting_refund(await _client(web.settings), web.settings, tmp_path, "100.00")
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        responses = await asyncio.gather(*(
            http.post(f"/api/approvals/{item.approval_id}/decision", headers=bearer(tokens[who]),
                      json={"decision": "approve", "digest": item.digest}) for who in ("bob", "carol")))
    assert sorted(r.status_code for r in responses) == [200, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert "already approved" in loser.json()["error"]
    await handle.result()
    with Session(support.ledger(web.settings.db_url)) as session:
        assert support.refunded_total(session, "A-1002") == 100


async def _client(settings: Settings):
    from engine.runtime.temporal import connect

    return await connect(settings.temporal)


async def test_forms_and_cookie_writes_need_csrf(web: Web, tmp_path: Path) -> None:
    make_people(web.settings.db_url)
    async with httpx.AsyncClient(base_url=web.url) as http:
        login = await http.post("/login", data={"username": "bob", "password": "bob-password", "csrf": "x"})
        assert login.status_code == 403
        csrf = await sign_in(http, "bob")
        cookie = http.cookies.get("airlock_session")
        assert cookie
        raw = (await http.get("/login")).headers.get("set-cookie", "")
        assert raw == "" or ("httponly" in raw.lower() and "samesite=strict" in raw.lower())
        forged = await http.post("/approvals/apr_x/decide", data={"decision": "approve", "digest": "d"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        api = await http.post("/api/approvals/apr_x/decision", json={"decision": "approve", "digest": "d"})
        assert api.status_code == 403
        api = await http.post("/api/approvals/apr_x/decision", json={"decision": "approve", "digest": "d"},
                              headers={"X-CSRF-Token": csrf})
        assert api.status_code == 404  # past CSRF: the approval does not exist
        cancel = await http.post("/api/runs/run_x/cancel", json={"reason": "forged"})
        assert cancel.status_code == 403 and "CSRF" in cancel.text
        cancel = await http.post("/api/runs/run_x/cancel", json={"reason": "mine"}, headers={"X-CSRF-Token": csrf})
        assert cancel.status_code == 404  # past CSRF: the run does not exist
        assert (await http.post("/logout", data={})).status_code == 403
        assert (await http.post("/logout", data={"csrf": csrf})).status_code == 303
        assert (await http.get("/")).status_code == 303


async def test_session_cookie_flags_and_wrong_password(web: Web) -> None:
    make_people(web.settings.db_url)
    async with httpx.AsyncClient(base_url=web.url) as http:
        page = await http.get("/login")
        set_cookie = page.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "airlock_session=" in set_cookie
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        wrong = await http.post("/login", data={"username": "bob", "password": "nope-nope", "csrf": csrf})
        assert wrong.status_code == 401 and "Wrong user name or password." in wrong.text


async def test_session_expires(web: Web) -> None:
    make_people(web.settings.db_url)
    web.settings.ui.session_ttl_s = 5
    async with httpx.AsyncClient(base_url=web.url) as http:
        await sign_in(http, "bob")
        assert (await http.get("/")).status_code == 200
        await asyncio.sleep(5.5)
        expired = await http.get("/")
        assert expired.status_code == 303 and expired.headers["location"].startswith("/login")


async def test_edit_over_the_api_validates_first(web: Web, tmp_path: Path) -> None:
    tokens = make_people(web.settings.db_url)
    handle, item = await waiting_refund(await _client(web.settings), web.settings, tmp_path, "180.00")
    url = f"/api/approvals/{item.approval_id}/edit"
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        bad = await http.post(url, headers=bearer(tokens["bob"]), json={
            "digest": item.digest, "args": {"order_id": "A-1002", "amount": "lots", "reason": "x"}})
        assert bad.status_code == 422 and "the edited arguments are invalid: amount" in bad.json()["error"]
        # Past the limits, on the pages as on the API: a 4xx naming the field, never a 500.
        csrf = await sign_in(http, "bob")
        page = f"/approvals/{item.approval_id}"
        long_reason = await http.post(f"{page}/decide", data={"decision": "reject", "digest": item.digest,
                                                                "comment": "no " * 1000, "csrf": csrf})
        assert long_reason.status_code == 303  # back to the page, which names the problem
        assert "comment: String should have at most 2000" in (await http.get(page)).text
        long_edit = await http.post(f"{page}/edit", data={"digest": item.digest, "comment": "c" * 3000, "csrf": csrf,
                                                          "arg:order_id": "A-1002", "arg:amount": "10.00",
                                                          "arg:reason": "goodwill"})
        assert long_edit.status_code == 303
        assert "comment: String should have at most 2000" in (await http.get(page)).text
        surrogate = await http.post(url, headers={**bearer(tokens["bob"]), "Content-Type": "application/json"},
                                    content=f'{{"digest": "{item.digest}", "args": '
                                            '{"order_id": "A-1002", "amount": "\\ud800", "reason": "x y"}}')
        assert surrogate.status_code == 422 and "not valid Unicode text" in surrogate.json()["error"]
        by_requester = await http.post(url, headers=bearer(tokens["alice"]), json={
            "digest": item.digest, "args": {"order_id": "A-1002", "amount": "10.00", "reason": "x y"}})
        assert by_requester.status_code == 409
        ok = await http.post(url, headers=bearer(tokens["bob"]), json={
            "digest": item.digest, "args": {"order_id": "A-1002", "amount": "10.00", "reason": "goodwill"}})
        assert ok.status_code == 200 and ok.json()["status"] == "edited"
    result = await handle.result()
    assert result.tool_calls[0].outcome == "executed" and result.tool_calls[0].args["amount"] == "10.00"


async def test_cli_speaks_to_the_api_with_a_token(web: Web, tmp_path: Path) -> None:
    tokens = make_people(web.settings.db_url)
    handle, item = await waiting_refund(await _client(web.settings), web.settings, tmp_path, "180.00")

    async def airlock(token: str, *args: str) -> tuple[int, str, str]:
        # A database the CLI cannot use: everything must come through the API.
        env = {**os.environ, "AIRLOCK_API__URL": web.url, "AIRLOCK_API__TOKEN": token, "COLUMNS": "200",
               "AIRLOCK_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "engine.cli", *args, cwd=ROOT, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await airlock(tokens["dave"], "approvals", "list", "--json")
    assert code == 0, err
    assert [i["approval_id"] for i in json.loads(out)] == [item.approval_id]
    code, _, err = await airlock(tokens["dave"], "approve", item.approval_id)
    assert code == 1 and "dave does not hold a role" in err
    code, _, err = await airlock(tokens["bob"], "approve", item.approval_id, "--as", "carol")
    assert code == 1 and "does not match the API token's user bob" in err
    code, out, err = await airlock(tokens["bob"], "edit", item.approval_id, "--set", "amount=30.00")
    assert code == 0 and f"{item.approval_id}: edited" in out, err
    result = await handle.result()
    assert result.tool_calls[0].outcome == "executed" and result.tool_calls[0].args["amount"] == "30.00"
    code, _, err = await airlock("alk_revoked", "approvals", "list")
    assert code == 1 and "the API refused the token" in err
    # Cancelling through the API: only the requester (no cancel roles are configured here).
    handle, _ = await waiting_refund(await _client(web.settings), web.settings, tmp_path, "180.00")
    code, _, err = await airlock(tokens["bob"], "runs", "cancel", handle.id, "--reason", "not mine")
    assert code == 1 and f"bob may not cancel run {handle.id}: only alice, who started it" in " ".join(err.split())
    code, out, err = await airlock(tokens["alice"], "runs", "cancel", handle.id, "--reason", "typo", "--json")
    assert code == 0 and json.loads(out) == {"run_id": handle.id, "status": "cancelling"}, err
    code, _, err = await airlock(tokens["alice"], "runs", "cancel", "no-such-run", "--reason", "typo")
    assert code == 1 and "no run no-such-run" in err


async def test_inbox_filters_and_pages(web: Web, tmp_path: Path) -> None:
    tokens = make_people(web.settings.db_url)
    support.reset_demo_ledger(web.settings.db_url)
    web.settings.ui.page_size = 2
    client = await _client(web.settings)
    ids = []
    for i, (name, tool_amount) in enumerate([("w-one", "60.00"), ("w-two", "70.00"), ("w-two", "80.00")]):
        spec = write_spec(tmp_path, [{"tool_calls": [refund("A-1002", tool_amount)]}, {"content": "ok"}],
                          f"spec{i}.yaml", name=name)
        handle = await start_run(client, task_queue=web.settings.temporal.task_queue, spec=spec,
                                 run_input={"customer_id": "cus_ana"}, requested_by="alice")
        ids.append((await wait_for_inbox(web.settings.db_url, handle.id))[0].approval_id)
    async with httpx.AsyncClient(base_url=web.url, headers=bearer(tokens["bob"])) as http:
        first = (await http.get("/api/approvals")).json()
        second = (await http.get("/api/approvals", params={"page": 2})).json()
        assert first["total"] == 3 and [i["approval_id"] for i in first["items"]] == [ids[2], ids[1]]
        assert [i["approval_id"] for i in second["items"]] == [ids[0]]  # newest first, across pages
        two = (await http.get("/api/approvals", params={"workflow": "w-two"})).json()
        assert two["total"] == 2 and {i["workflow"] for i in two["items"]} == {"w-two"}
        assert (await http.get("/api/approvals", params={"role": "support-leads"})).json()["total"] == 3
        assert (await http.get("/api/approvals", params={"role": "treasury-ops"})).json()["total"] == 0
        assert (await http.get("/api/approvals", params={"tool": "lookup_order"})).json()["total"] == 0


async def test_expired_action_cannot_be_decided(web: Web, tmp_path: Path) -> None:
    tokens = make_people(web.settings.db_url)
    handle, item = await waiting_refund(await _client(web.settings), web.settings, tmp_path, "90.00",
                                        approval={"timeout": "2s"})
    result = await handle.result()  # nobody decides within two seconds
    assert result.tool_calls[0].outcome == "expired"
    async with httpx.AsyncClient(base_url=web.url, headers=bearer(tokens["bob"])) as http:
        late = await http.post(f"/api/approvals/{item.approval_id}/decision",
                               json={"decision": "approve", "digest": item.digest})
    assert late.status_code == 409 and "already expired" in late.json()["error"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_people_see_and_start_runs_of_their_own_tenants_only(web: Web, tmp_path: Path) -> None:
    tokens = make_people(web.settings.db_url)
    with Session(make_engine(web.settings.db_url)) as session:
        users.add_user(session, name="olga", password="olga-password", roles=["support-leads"], tenants=["acme"])
        tokens["olga"] = users.create_token(session, user="olga")
    handle, item = await waiting_refund(await _client(web.settings), web.settings, tmp_path)  # tenant default
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        olga, bob = bearer(tokens["olga"]), bearer(tokens["bob"])
        # Another tenant's run, timeline, progress, approval and stats: not found, not listed, not counted.
        for path in (f"/api/runs/{handle.id}", f"/api/runs/{handle.id}/timeline", f"/api/runs/{handle.id}/progress",
                     f"/api/approvals/{item.approval_id}"):
            assert (await http.get(path, headers=olga)).status_code == 404, path
            assert (await http.get(path, headers=bob)).status_code == 200, path
        assert (await http.get("/api/approvals", headers=olga)).json()["total"] == 0
        assert (await http.get("/api/approvals", headers=bob)).json()["total"] == 1
        assert (await http.get("/api/stats?since=1h", headers=olga)).json()["runs"]["total"] == 0
        assert (await http.get("/api/stats?since=1h", headers=bob)).json()["runs"]["total"] == 1
        decided = await http.post(f"/api/approvals/{item.approval_id}/decision", headers=olga,
                                  json={"decision": "approve", "digest": item.digest})
        assert decided.status_code == 404
        # Starting runs: only in a tenant of one's own; a 200 kB tenant name is refused, not stored.
        other = await http.post("/api/runs", headers=bearer(tokens["alice"]),
                                json={"workflow": "support_refund", "tenant": "acme", "input": {}})
        assert other.status_code == 403 and "alice does not belong to tenant 'acme'" in other.json()["error"]
        huge = await http.post("/api/runs", headers=bearer(tokens["alice"]),
                               json={"workflow": "support_refund", "tenant": "x" * 200_000, "input": {}})
        assert huge.status_code == 422
        own = await http.post("/api/runs", headers=olga, json={"workflow": "support_refund", "tenant": "acme",
                                                                 "input": {"customer_id": "cus_ana"}})
        assert own.status_code == 201, own.text
    await handle.cancel()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_trusted_header_counts_only_from_the_proxy(web: Web) -> None:
    make_people(web.settings.db_url)
    web.settings.ui.trusted_header = "X-Forwarded-User"
    async with httpx.AsyncClient(base_url=web.url) as http:
        via_proxy = await http.get("/api/me", headers={"X-Forwarded-User": "bob"})  # from loopback: the proxy
        assert via_proxy.status_code == 200 and via_proxy.json()["name"] == "bob"
        web.settings.ui.trusted_proxies = ["192.0.2.10"]  # the proxy is elsewhere: this client is not it
        forged = await http.get("/api/me", headers={"X-Forwarded-User": "bob"})
        assert forged.status_code == 401


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_hostile_run_bodies_get_4xx_and_the_server_stays_up(web: Web) -> None:
    tokens = make_people(web.settings.db_url)
    headers = {**bearer(tokens["alice"]), "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=web.url, timeout=30, headers=headers) as http:
        deep = '{"workflow": "support_refund", "input": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
        assert (await http.post("/api/runs", content=deep)).status_code == 422
        moderately = '{"workflow": "support_refund", "input": {"x": ' + "[" * 40 + "]" * 40 + "}}"
        answer = await http.post("/api/runs", content=moderately)
        assert answer.status_code == 422 and "nested deeper than 32 levels" in answer.text
        big = json.dumps({"workflow": "support_refund", "input": {"blob": "x" * 3_000_000}})
        assert (await http.post("/api/runs", content=big)).status_code == 413
        nan = '{"workflow": "support_refund", "input": {"amount": NaN}}'
        assert (await http.post("/api/runs", content=nan)).status_code == 422
        # JSON in UTF-16, which the depth check read as UTF-8 (a character whose bytes are `["` hid the brackets
        # that follow) while the parser decoded it: 120,000 levels, a crash of the whole server (SIGSEGV) before.
        # Refused as not UTF-8, with or without anybody signed in.
        n = 120_000
        sixteen = ('{"c":"\u225b","a":' + "[" * n + "]" * n + "}").encode("utf-16-le")
        for auth in ({}, {"Authorization": "Bearer none"}):
            answer = await http.post("/api/runs", content=sixteen, headers=auth)
            assert answer.status_code == 415 and "UTF-8" in answer.text
        utf8_bom = '\ufeff{"workflow": "support_refund", "inputs": {}}'.encode()  # UTF-8 with a BOM: read, and
        answer = await http.post("/api/runs", content=utf8_bom)  # refused for its unknown field, not its encoding
        assert answer.status_code == 422 and "inputs" in answer.text
        assert (await http.get("/api/me")).status_code == 200  # still serving
        assert (await http.get("/api/stats", params={"since": "99999999999d"})).status_code == 422
        surrogate = '{"workflow": "support_refund", "input": {"message": "\\ud800"}}'  # a lone surrogate: was a 500
        answer = await http.post("/api/runs", content=surrogate)
        assert answer.status_code == 422 and "not valid Unicode text" in answer.text

        async def chunks(size: int):  # no Content-Length: counted as it arrives
            for _ in range(size // 65536):
                yield b"x" * 65536

        chunked = await http.post("/api/runs", content=chunks(2 * 1024 * 1024))
        assert chunked.status_code == 413 and "over 524288 bytes" in chunked.json()["error"]
        # Pages too: a sign-in form of 120 one-megabyte fields is refused before it is parsed.
        form = {f"f{i}": "x" * 1_000_000 for i in range(3)}
        login = await http.post("/login", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert login.status_code == 413
        assert (await http.get("/api/me")).status_code == 200  # still serving


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_ui_serves_while_temporal_is_down_and_says_so_when_it_needs_it(settings: Settings) -> None:
    import threading

    import uvicorn

    from engine.local import processes as stack
    from engine.runtime.temporal import connect
    from engine.ui.app import create_app

    tokens = make_people(settings.db_url)
    settings.temporal.address = f"127.0.0.1:{stack.free_port()}"  # nothing listens there
    settings.ui.port = stack.free_port()
    app = create_app(settings, db=Database(settings.db_url), connect=lambda: connect(settings.temporal))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.ui.port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.ui.port}", timeout=30) as http:
            assert (await http.get("/login")).status_code == 200
            assert (await http.get("/api/approvals", headers=bearer(tokens["bob"]))).status_code == 200
            start = await http.post("/api/runs", headers=bearer(tokens["alice"]), json={"workflow": "support_refund"})
            assert start.status_code == 503 and "cannot reach Temporal" in start.json()["error"]
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_run_is_cancelled_by_its_requester_or_a_cancel_role_and_by_nobody_else(web: Web,
                                                                                       tmp_path: Path) -> None:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

    tokens = make_people(web.settings.db_url)
    with Session(make_engine(web.settings.db_url)) as session:
        users.add_user(session, name="olga", password="olga-password", roles=["support-leads"], tenants=["acme"])
        tokens["olga"] = users.create_token(session, user="olga")
    web.settings.auth.cancel_roles = ["support-leads"]
    client = await _client(web.settings)
    handle, item = await waiting_refund(client, web.settings, tmp_path)  # alice's, in tenant default
    url = f"/api/runs/{handle.id}/cancel"
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:

        async def cancel(who: str, reason: str = "the customer withdrew the request") -> httpx.Response:
            return await http.post(url, headers=bearer(tokens[who]), json={"reason": reason})

        refused = await cancel("dave")  # support, not the requester
        assert refused.status_code == 403
        assert refused.json()["error"] == (f"dave may not cancel run {handle.id}: only alice, who started it, or a "
                                           "person with one of the roles support-leads")
        assert (await cancel("olga")).status_code == 404  # another tenant's: not confirmed to exist
        assert (await cancel("alice", " \n\t ")).status_code == 422
        assert (await cancel("alice", "x" * 501)).status_code == 422
        nul = await cancel("alice", "wrong\u0000order \u001b[2J \u202e")  # PostgreSQL cannot even store the NUL
        assert nul.status_code == 422
        assert "control or invisible characters are not accepted (\\u202e, \\x00, \\x1b)" in nul.json()["error"]
        assert (await http.post(url, headers=bearer(tokens["alice"]), json={"reason": "x", "run": 1})).status_code \
            == 422  # unknown fields are refused
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING  # none of that touched it

        done = await cancel("alice", "wrong order:\nthe customer\tcalled")
        assert done.status_code == 202 and done.json() == {"run_id": handle.id, "status": "cancelling"}
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        status = (await http.get(f"/api/runs/{handle.id}", headers=bearer(tokens["alice"]))).json()
        assert status["run"]["status"] == "cancelled"
        assert status["run"]["reason"] == "cancelled: alice cancelled it: wrong order: the customer called"
        assert status["pending"] == []
        closed = (await http.get(f"/api/approvals/{item.approval_id}", headers=bearer(tokens["bob"]))).json()
        assert closed["approval"]["status"] == "expired"
        again = await cancel("alice")
        assert again.status_code == 409 and "has ended (cancelled)" in again.json()["error"]

        # A support lead (a cancel role) may cancel a colleague's run.
        handle, _ = await waiting_refund(client, web.settings, tmp_path)
        assert (await http.post(f"/api/runs/{handle.id}/cancel", headers=bearer(tokens["carol"]),
                                json={"reason": "duplicate of another run"})).status_code == 202
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        run = (await http.get(f"/api/runs/{handle.id}", headers=bearer(tokens["carol"]))).json()["run"]
        assert run["reason"] == "cancelled: carol cancelled it: duplicate of another run"
    assert support.list_refunds(web.settings.db_url) == []
