"""Sessions as an attacker sees them: copied cookies, guessed passwords, cookies with other headers."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from sqlmodel import Session

from engine.store import signin, users
from engine.store.db import make_engine
from tests.conftest import PASSWORD, Web

pytestmark = pytest.mark.integration

# The address a proxy on loopback reports: counted only with ui.forwarded_for on (the tests act as that proxy).
ELSEWHERE = {"X-Forwarded-For": "192.0.2.7"}


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


async def attempt(http: httpx.AsyncClient, name: str, password: str = PASSWORD,
                  headers: dict[str, str] | None = None) -> httpx.Response:
    """One sign-in through the form (with the form's CSRF token)."""
    csrf = _csrf((await http.get("/login")).text)
    return await http.post("/login", data={"username": name, "password": password, "csrf": csrf, "next": "/"},
                           headers=headers)


async def sign_in(http: httpx.AsyncClient, name: str) -> str:
    """Sign in; return the session's CSRF token."""
    assert (await attempt(http, name)).status_code == 303
    return _csrf((await http.get("/")).text)


async def test_a_copied_cookie_is_refused_after_sign_out(web: Web) -> None:
    async with httpx.AsyncClient(base_url=web.url) as http, httpx.AsyncClient(base_url=web.url) as thief:
        csrf = await sign_in(http, "bob")
        thief.cookies.set("airlock_session", http.cookies["airlock_session"])
        assert (await thief.get("/api/me")).json()["name"] == "bob"  # the copy works while the session lives
        assert (await http.post("/logout", data={"csrf": csrf})).status_code == 303
        assert (await thief.get("/api/me")).status_code == 401
        page = await thief.get("/")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        write = await thief.post("/api/approvals/apr_x/decision", json={"decision": "approve", "digest": "d"},
                                 headers={"X-CSRF-Token": csrf})
        assert write.status_code == 401


async def test_a_password_reset_ends_every_session_of_that_user(web: Web) -> None:
    async with httpx.AsyncClient(base_url=web.url) as bob, httpx.AsyncClient(base_url=web.url) as carol:
        await sign_in(bob, "bob")
        await sign_in(carol, "carol")
        with Session(make_engine(web.settings.db_url)) as session:
            users.add_user(session, name="bob", password="a-new-password", roles=["support-leads"])
        assert (await bob.get("/api/me")).status_code == 401
        assert (await carol.get("/api/me")).json()["name"] == "carol"


async def test_repeated_wrong_passwords_are_refused_for_a_while(web: Web) -> None:
    limit = web.settings.ui.sign_in_max_failures
    web.settings.ui.forwarded_for = True
    async with httpx.AsyncClient(base_url=web.url) as http:
        for _ in range(limit):
            assert (await attempt(http, "bob", "wrong-password")).status_code == 401
        locked = await attempt(http, "bob", "wrong-password")
        assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
        assert 0 < int(locked.headers["retry-after"]) <= web.settings.ui.sign_in_window_s
        right = await attempt(http, "bob")  # the right password too: guessing on does not help
        assert right.status_code == 429
        assert (await http.get("/api/me")).status_code == 401
        assert (await attempt(http, "Bob ", "wrong-password")).status_code == 429  # another spelling, same user
        assert (await attempt(http, "carol")).status_code == 303  # another user from this address
        assert (await attempt(http, "bob", headers=ELSEWHERE)).status_code == 303  # bob from elsewhere
    with Session(make_engine(web.settings.db_url)) as session:  # counted in the database: any process sees it
        wait = signin.sign_in_wait(session, user="bob", address="127.0.0.1", max_failures=limit,
                                   max_per_address=web.settings.ui.sign_in_max_failures_per_address,
                                   window_s=web.settings.ui.sign_in_window_s)
    assert wait > 0
    web.settings.ui.sign_in_window_s = 1
    await asyncio.sleep(1.2)
    async with httpx.AsyncClient(base_url=web.url) as http:
        assert (await attempt(http, "bob")).status_code == 303  # the window passed


async def test_a_successful_sign_in_clears_the_count(web: Web) -> None:
    limit = web.settings.ui.sign_in_max_failures
    async with httpx.AsyncClient(base_url=web.url) as http:
        for _ in range(limit - 1):
            assert (await attempt(http, "dave", "wrong-password")).status_code == 401
        assert (await attempt(http, "dave")).status_code == 303
        for _ in range(limit - 1):
            assert (await attempt(http, "dave", "wrong-password")).status_code == 401
        assert (await attempt(http, "dave")).status_code == 303


async def test_one_address_guessing_many_names_is_refused_without_locking_out_others(web: Web) -> None:
    web.settings.ui.sign_in_max_failures_per_address = 6
    web.settings.ui.forwarded_for = True
    async with httpx.AsyncClient(base_url=web.url) as http:
        for name in ("nobody1", "nobody2", "nobody3", "alice", "bob", "carol"):
            assert (await attempt(http, name, "wrong-password")).status_code == 401
        refused = await attempt(http, "dave")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert (await attempt(http, "dave", headers=ELSEWHERE)).status_code == 303


async def test_a_client_cannot_pose_as_many_addresses(web: Web) -> None:
    limit = web.settings.ui.sign_in_max_failures
    async with httpx.AsyncClient(base_url=web.url) as http:
        for i in range(limit + 3):  # a fresh X-Forwarded-For each time, and no trusted proxy in between
            answer = await attempt(http, "alice", "wrong", headers={"X-Forwarded-For": f"198.51.100.{i}"})
            assert answer.status_code == (401 if i < limit else 429), i
        web.settings.ui.forwarded_for = True
        web.settings.ui.trusted_proxies = ["192.0.2.99"]  # a proxy elsewhere: this loopback client is not it
        assert (await attempt(http, "alice", headers={"X-Forwarded-For": "198.51.100.200"})).status_code == 429


async def test_parallel_guesses_get_no_more_tries_than_the_limit(web: Web) -> None:
    limit = web.settings.ui.sign_in_max_failures
    clients = [httpx.AsyncClient(base_url=web.url, timeout=60) for _ in range(3 * limit)]
    try:
        forms = [_csrf((await http.get("/login")).text) for http in clients]
        answers = await asyncio.gather(*(
            http.post("/login", data={"username": "alice", "password": f"guess-{i}", "csrf": csrf})
            for i, (http, csrf) in enumerate(zip(clients, forms, strict=True))))
    finally:
        for http in clients:
            await http.aclose()
    codes = sorted(a.status_code for a in answers)
    assert codes.count(401) <= limit and set(codes) == {401, 429}


async def test_cookie_writes_need_csrf_whatever_authorization_comes_with_them(web: Web) -> None:
    url, body = "/api/approvals/apr_x/decision", {"decision": "approve", "digest": "d"}
    async with httpx.AsyncClient(base_url=web.url) as http:
        csrf = await sign_in(http, "bob")
        for header in ("Basic Ym9iOmJvYg==", "Token abc", "garbage", "Bearerx abc"):
            answer = await http.post(url, json=body, headers={"Authorization": header})
            assert answer.status_code == 403 and "CSRF" in answer.text, header
        past_csrf = await http.post(url, json=body, headers={"Authorization": "Basic Ym9iOmJvYg==",
                                                             "X-CSRF-Token": csrf})
        assert past_csrf.status_code == 404  # the approval does not exist
        for forged in ("Bearer alk_forged", "bearer", "BEARER  x"):  # a bad token never falls back to the cookie
            assert (await http.get("/api/me", headers={"Authorization": forged})).status_code == 401, forged
        forged = {"Authorization": "Bearer alk_forged"}
        assert (await http.post(url, json=body, headers={**forged, "X-CSRF-Token": csrf})).status_code == 401
        assert (await http.get("/api/me")).json()["name"] == "bob"
