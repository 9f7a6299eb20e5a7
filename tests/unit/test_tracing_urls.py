"""URLs on HTTP spans: what a trace may show of where a call went."""

from __future__ import annotations

import pytest

from engine.tracing import safe_url


@pytest.mark.parametrize(("url", "shown"), [
    ("https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161", "https://mainnet.infura.io/v3/REDACTED"),
    ("https://user:secret@node.example:8545/rpc?key=abc", "https://node.example:8545/rpc"),
    ("http://127.0.0.1:8181/v1/data/airlock/treasury_payout/decision",
     "http://127.0.0.1:8181/v1/data/airlock/treasury_payout/decision"),
])
def test_span_urls_lose_credentials_and_key_like_segments(url: str, shown: str) -> None:
    assert safe_url(url) == shown
