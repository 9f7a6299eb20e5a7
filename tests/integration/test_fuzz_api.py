"""Hostile API bodies against the real server (uvicorn, Temporal, OPA, SQL): 4xx with a reason, never a run.

The hypothesis properties run in a thread with a synchronous client while the
server and a worker run on the test's event loop. See ``tests/unit/test_fuzz.py``
for the strategies and ``AIRLOCK_FUZZ_EXAMPLES``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select
from temporalio.client import Client

from engine.store.db import make_engine
from engine.store.tables import RunRow
from tests.conftest import Web
from tests.integration.test_api import bearer, make_people
from tests.unit.test_fuzz import DEEP_TEXT, FUZZ, FUZZ_EXAMPLES, JSONISH, ODD_TEXT, as_json_text, deep

pytestmark = pytest.mark.integration

SERVED = ["support_refund", "support-refund", "treasury_payout", "treasury-payout"]
HOSTILE_INPUT = st.one_of(  # never a valid run input
    st.builds(lambda n: {"blob": "x" * n}, st.integers(256 * 1024, 600 * 1024)),
    st.sampled_from([float("nan"), float("inf"), [1, 2], "text", 7, None, True]),
    st.builds(lambda v: {"amount": v}, st.sampled_from([float("nan"), float("-inf")])),
    st.builds(lambda n: json.loads(deep(n, "{")), st.integers(34, 60)),
)
START_BODIES = st.one_of(
    st.fixed_dictionaries({"workflow": st.sampled_from(SERVED), "input": HOSTILE_INPUT},
                          optional={"version": st.one_of(st.integers(), ODD_TEXT), "tenant": ODD_TEXT}),
    st.fixed_dictionaries({"workflow": st.one_of(ODD_TEXT, st.text(max_size=30), JSONISH)},
                          optional={"input": JSONISH, "version": JSONISH, "tenant": JSONISH, "spec": JSONISH,
                                    "requested_by": st.just("bob"), "run_id": JSONISH}),
    st.builds(lambda body, version: {**body, "version": version},
              st.fixed_dictionaries({"workflow": st.sampled_from(SERVED), "input": st.just({})}),
              st.one_of(st.integers(min_value=2, max_value=2**80), st.integers(max_value=0))),
)
DECISION_BODIES = st.one_of(
    st.fixed_dictionaries({}, optional={"decision": st.one_of(st.sampled_from(["approve", "reject"]), JSONISH),
                                        "digest": JSONISH, "comment": JSONISH, "by": JSONISH, "args": JSONISH}),
    JSONISH,
)


def raw_body(value: Any) -> str:
    return as_json_text(value)


async def test_hostile_bodies_get_a_4xx_with_a_reason_and_start_nothing(web: Web, client: Client) -> None:
    token = make_people(web.settings.db_url)["alice"]

    def hunt() -> None:
        with httpx.Client(base_url=web.url, headers=bearer(token), timeout=30) as http:
            def refused(response: httpx.Response) -> None:
                assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
                assert "Traceback" not in response.text
                error = response.json()
                assert isinstance(error.get("error"), str) and error["error"], error

            @settings(FUZZ, max_examples=2 * FUZZ_EXAMPLES)
            @given(body=START_BODIES)
            @example(body={"workflow": "support_refund", "input": json.loads(deep(3000, "{"))})
            @example(body={"workflow": "support_refund", "input": {"blob": "x" * 3_000_000}})
            @example(body={"workflow": "support_refund", "input": {"x": float("nan")}})
            @example(body={"workflow": "support_refund", "input": {}, "tenant": "t" * 200_000})
            @example(body={"workflow": "support_refund", "input": {}, "spec": {"name": "mine"}})
            def start(body: Any) -> None:
                try:
                    text = raw_body(body)
                except RecursionError:  # deeper than this client can even write
                    return
                refused(http.post("/api/runs", content=text, headers={"content-type": "application/json"}))

            @settings(FUZZ, max_examples=FUZZ_EXAMPLES)
            @given(raw=st.one_of(DEEP_TEXT, st.text(max_size=200), st.binary(max_size=200).map(repr)),
                   content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                                 "multipart/form-data; boundary=x"]))
            @example(raw="[" * 100_000, content_type="application/json")
            def garbage(raw: str, content_type: str) -> None:
                refused(http.post("/api/runs", content=raw.encode("utf-8", errors="surrogatepass"),
                                  headers={"content-type": content_type}))

            @settings(FUZZ, max_examples=FUZZ_EXAMPLES)
            @given(approval=st.one_of(st.text(min_size=1, max_size=60), ODD_TEXT.filter(bool)),
                   action=st.sampled_from(["decision", "edit"]), body=DECISION_BODIES)
            def decide(approval: str, action: str, body: Any) -> None:
                path = quote(approval, safe="", errors="surrogatepass")  # lone surrogates: bytes that are not UTF-8
                response = http.post(f"/api/approvals/{path}/{action}", content=raw_body(body),
                                     headers={"content-type": "application/json"})
                if response.status_code == 404 and "error" not in response.text:  # no such route (an odd path)
                    return
                refused(response)

            start()
            garbage()
            decide()

    await asyncio.to_thread(hunt)
    with Session(make_engine(web.settings.db_url)) as session:
        assert session.exec(select(RunRow)).all() == []
    started = [w async for w in client.list_workflows(f'TaskQueue="{web.settings.temporal.task_queue}"')]
    assert started == []
