"""Redaction: what of an endpoint URL may be stored or shown, in spans, errors and text.

The adapters (chain, model) are tested against real sockets: a closed port, and
a hostile endpoint that echoes the key it was sent.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.adapters.chain import Chain
from engine.adapters.chain_access import ChainAccess
from engine.adapters.llm import ModelClient
from engine.config import ChainSettings, LlmSettings
from engine.errors import ChainUnavailableError, ModelError
from engine.local import processes as stack
from engine.redact import REDACTED, redact_text, safe_url
from engine.runtime.activity_io import CallModelInput
from engine.spec import EndpointSpec, ModelSpec, endpoint_label

PATH_KEY = "9aa3d95b3bc440fa88ea12eaa4456161"
QUERY_KEY = "q5ecr3tQueryValue0042"
PASSWORD = "pw-8c1f4e2a9b7d"
API_KEY = "sk-live-0123456789abcdef0123"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161", "https://mainnet.infura.io/v3/REDACTED"),
    ("https://user:secret@node.example:8545/rpc?key=abc", "https://node.example:8545/rpc"),
    ("http://127.0.0.1:8181/v1/data/airlock/treasury_payout/decision",
     "http://127.0.0.1:8181/v1/data/airlock/treasury_payout/decision"),
    ("https://eth-mainnet.g.alchemy.com/v2/Xk2_Tb9-pQ7rLm4nWz8YcA1dEf", "https://eth-mainnet.g.alchemy.com/v2/REDACTED"),
    ("http://[::1]:8545/rpc#frag", "http://[::1]:8545/rpc"),
    ("https://host:notaport/x", REDACTED),
    ("", ""),
])
def test_urls_lose_credentials_query_and_key_like_segments(url: str, shown: str) -> None:
    assert safe_url(url) == shown
    assert safe_url(shown) == shown  # redacting twice changes nothing


def test_text_loses_every_part_of_a_configured_url() -> None:
    url = f"https://treasury:{PASSWORD}@node.example/v3/{PATH_KEY}?apikey={QUERY_KEY}&network=main"
    text = (f"eth_chainId at {url} failed: ConnectionError: HTTPSConnectionPool(host='node.example', port=443): "
            f"Max retries exceeded with url: /v3/{PATH_KEY}?apikey={QUERY_KEY}&network=main (Caused by ...)")
    shown = redact_text(text, url)
    assert not any(secret in shown for secret in (PATH_KEY, QUERY_KEY, PASSWORD))
    assert shown.startswith("eth_chainId at https://node.example/v3/REDACTED failed: ConnectionError")
    assert "host='node.example', port=443" in shown and "network=main" in shown


def test_text_loses_credentials_and_key_like_parameters_of_any_url() -> None:
    text = (f"GET https://bob:{PASSWORD}@other.example/x?access_token={QUERY_KEY}&page=2 and "
            f"http://{PATH_KEY}@rpc.example/ and https://api.example/v1?sig=abc123&X-Api-Key={API_KEY}")
    shown = redact_text(text)
    assert not any(secret in shown for secret in (PATH_KEY, QUERY_KEY, PASSWORD, API_KEY, "abc123"))
    assert shown == ("GET https://REDACTED@other.example/x?access_token=REDACTED&page=2 and "
                     "http://REDACTED@rpc.example/ and https://api.example/v1?sig=REDACTED&X-Api-Key=REDACTED")


def test_text_loses_named_secret_values_and_keeps_ordinary_text() -> None:
    assert redact_text(f"Incorrect API key provided: {API_KEY}.", secrets=[API_KEY]) == (
        "Incorrect API key provided: REDACTED.")
    ordinary = "transfer of 10 tUSD to 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 denied: over the limit"
    assert redact_text(ordinary, "http://127.0.0.1:8545", secrets=["", None]) == ordinary


def test_an_endpoint_is_labelled_without_its_key() -> None:
    endpoint = EndpointSpec(name="gpt", base_url=f"https://u:{PASSWORD}@llm.example/v1/{PATH_KEY}?key={QUERY_KEY}")
    assert endpoint_label(endpoint, None) == "gpt @ https://llm.example/v1/REDACTED"


def _chain_of(exc: BaseException) -> str:
    """The error as Temporal records it (message and every cause) and as a log's traceback shows it."""
    return "".join(traceback.format_exception(exc))


def test_chain_errors_name_the_node_without_its_key() -> None:
    url = f"http://treasury:{PASSWORD}@127.0.0.1:{stack.free_port()}/v3/{PATH_KEY}?apikey={QUERY_KEY}"
    chain = Chain(url, timeout_s=1)
    with pytest.raises(ChainUnavailableError) as caught:
        chain.chain_id()
    assert str(caught.value).startswith("eth_chainId at http://127.0.0.1:")
    assert not any(secret in _chain_of(caught.value) for secret in (PATH_KEY, QUERY_KEY, PASSWORD))
    access = ChainAccess(ChainSettings(rpc_url=url), db=None, signer=None)  # type: ignore[arg-type]
    assert PATH_KEY not in repr(access) and PASSWORD not in repr(access)


class _EchoingEndpoint(BaseHTTPRequestHandler):
    """A model endpoint that refuses every request and echoes the key and the path it was sent."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers['Authorization']} "
                                                f"for {self.path}", "type": "invalid_request_error"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echoing_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _request(model: ModelSpec) -> CallModelInput:
    return CallModelInput(run_id="r", step=1, model=model, messages=[{"role": "user", "content": "hi"}], tools=[])


async def test_model_errors_never_carry_the_api_key_or_the_url_key(echoing_endpoint: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_TEST_MODEL_KEY", API_KEY)
    model = ModelSpec(name="gpt", base_url=f"{echoing_endpoint}/v1/{PATH_KEY}", api_key_env="AIRLOCK_TEST_MODEL_KEY",
                      timeout_s=5)
    with pytest.raises(ModelError) as caught:
        await ModelClient(LlmSettings()).complete(_request(model))
    assert "AuthenticationError" in str(caught.value) and "Incorrect API key provided" in str(caught.value)
    assert API_KEY not in _chain_of(caught.value) and PATH_KEY not in _chain_of(caught.value)


async def test_an_unreachable_model_endpoint_is_named_without_its_key() -> None:
    closed = f"http://u:{PASSWORD}@127.0.0.1:{stack.free_port()}/v1/{PATH_KEY}?api-key={QUERY_KEY}"
    with pytest.raises(ModelError) as caught:
        await ModelClient(LlmSettings()).complete(_request(ModelSpec(name="gpt", base_url=closed, timeout_s=2)))
    assert "no model endpoint answered: gpt @ http://127.0.0.1:" in str(caught.value)
    assert not any(secret in _chain_of(caught.value) for secret in (PATH_KEY, QUERY_KEY, PASSWORD))


@pytest.mark.parametrize("url, shown, key", [  # keys written the other ways providers write them
    ("https://h.example/v3;apikey=SECRETSECRET", "https://h.example/v3", "SECRETSECRET"),
    ("https://h.example/v3/abcdefghijklmnopqrstuvwxyzab", "https://h.example/v3/REDACTED",
     "abcdefghijklmnopqrstuvwxyzab"),  # letters only
    ("https://h.example/v3/ab.cd+ef=12345678", "https://h.example/v3/REDACTED", "ab.cd+ef=12345678"),
    ("https://h.example/v3/a1b2c3d4e5f6g", "https://h.example/v3/REDACTED", "a1b2c3d4e5f6g"),  # 13 characters
    ("https://k3y1234567890abcdef.rpc.example.com/x", "https://REDACTED.rpc.example.com/x", "k3y1234567890abcdef"),
    ("https://h.example/x#token=abcdef1234567890", "https://h.example/x", "abcdef1234567890"),
])
def test_keys_in_other_places_of_a_url_are_redacted(url: str, shown: str, key: str) -> None:
    assert safe_url(url) == shown
    text = f"GET {url.split('//', 1)[1]} failed; then {url}"  # as libraries quote it: host and path, or all
    assert key in text and key not in redact_text(text, url)


def test_an_unparsable_configured_url_leaves_no_key_in_text() -> None:
    url = "https://[h.example/x/k3y1234567890abcdefgh"  # a bracket urlsplit refuses
    assert safe_url(url) == "REDACTED"
    assert "k3y1234567890abcdefgh" not in redact_text("GET /x/k3y1234567890abcdefgh failed", url)
