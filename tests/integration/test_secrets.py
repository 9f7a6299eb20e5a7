"""Secrets in endpoint URLs never reach the record: reasons, SQL, Temporal history, the model, the logs.

An RPC node's URL and a model endpoint's ``base_url`` often carry a provider's
API key (``/v3/<key>``, ``?apikey=``, ``user:password@``); the model's API key
comes from the environment. Each run below fails on purpose against such an
endpoint, and every place the failure is written to is searched for them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy
from temporalio.client import Client

from engine.config import ChainSettings, Settings
from engine.local import processes as stack
from engine.runtime.payloads import RunResult
from tests.conftest import ANVIL_KEY
from tests.helpers import run_to_end, write_spec
from tests.integration.test_runs import history_plaintext, model_requests
from tests.integration.test_treasury import ACME, pay, treasury_spec

pytestmark = pytest.mark.integration

PATH_KEY = "9aa3d95b3bc440fa88ea12eaa4456161"
QUERY_KEY = "q5ecr3tQueryValue0042"
PASSWORD = "pw-8c1f4e2a9b7d"
API_KEY = "sk-live-0123456789abcdef0123"
SECRETS = (PATH_KEY, QUERY_KEY, PASSWORD, API_KEY)


def sql_dump(db_url: str) -> str:
    """Every row of every table, as text."""
    engine = sqlalchemy.create_engine(db_url)
    tables = sqlalchemy.MetaData()
    tables.reflect(engine)
    with engine.connect() as conn:
        text = "\n".join(repr(tuple(row)) for table in tables.sorted_tables
                         for row in conn.execute(sqlalchemy.select(table)))
    engine.dispose()
    return text


async def everywhere(client: Client, settings: Settings, result: RunResult, logs: str) -> dict[str, str]:
    """What the run left behind, by where it is kept."""
    history = await client.get_workflow_handle(result.run_id).fetch_history()
    return {"result": result.model_dump_json(), "sql": sql_dump(settings.db_url),
            "history": history_plaintext(history.to_json_dict()),
            "model": repr([r.messages for r in await model_requests(client, result.run_id)]), "logs": logs}


def assert_no_secret(places: dict[str, str]) -> None:
    leaks = [(where, secret) for where, text in places.items() for secret in SECRETS if secret in text]
    assert not leaks


async def test_an_rpc_key_never_reaches_the_record(client: Client, settings: Settings, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    port = stack.free_port()  # nothing listens: reading the facts fails, with the URL in the library's error
    rpc_url = f"http://treasury:{PASSWORD}@127.0.0.1:{port}/v3/{PATH_KEY}?apikey={QUERY_KEY}"
    settings.chain = ChainSettings(rpc_url=rpc_url, rpc_timeout_s=1, signer_key=ANVIL_KEY)  # type: ignore[arg-type]
    spec = treasury_spec(tmp_path, pay(ACME, "10"))
    with caplog.at_level(logging.INFO):
        result = await run_to_end(client, settings, spec, {})
    [call] = result.tool_calls
    assert result.status == "completed" and call.outcome == "denied"
    assert call.decision.reasons[0] == "facts unavailable"
    # Still says where it failed: host, port and the path with the key cut out.
    assert f"at http://127.0.0.1:{port}/v3/REDACTED failed: ConnectionError" in call.decision.reasons[1]
    places = await everywhere(client, settings, result, caplog.text)
    assert "facts unavailable" in places["model"] and "ConnectionError" in places["sql"]
    assert_no_secret(places)


async def test_a_model_endpoint_key_never_reaches_the_record(client: Client, settings: Settings, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    port = stack.free_port()
    base_url = f"http://agent:{PASSWORD}@127.0.0.1:{port}/v1/{PATH_KEY}?api-key={QUERY_KEY}"
    monkeypatch.setenv("AIRLOCK_TEST_MODEL_KEY", API_KEY)
    spec = write_spec(tmp_path, [{"content": "never answered"}], model={
        "provider": "openai", "name": "gpt-test", "base_url": base_url, "api_key_env": "AIRLOCK_TEST_MODEL_KEY",
        "timeout_s": 2})
    with caplog.at_level(logging.INFO):
        result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana", "message": "please refund"})
    assert result.status == "failed"
    assert result.reason == (f"call_model failed: RetryableModelError: no model endpoint answered: gpt-test @ "
                             f"http://127.0.0.1:{port}/v1/REDACTED: APIConnectionError: Connection error.")
    assert_no_secret(await everywhere(client, settings, result, caplog.text))
