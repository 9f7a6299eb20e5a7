"""The chain adapter against a real anvil node: deploy the demo token, read state, fail clearly."""

from __future__ import annotations

import pytest

from engine.adapters.chain import Chain
from engine.adapters.chain_codec import to_units
from engine.adapters.chain_keys import deploy_token
from engine.errors import ChainUnavailableError
from engine.local import processes as stack
from tests.conftest import ANVIL_ADDRESS, ANVIL_KEY

pytestmark = pytest.mark.integration


def test_deploy_and_read_the_demo_token(anvil: str) -> None:
    chain = Chain(anvil)
    assert chain.chain_id() == 31337
    supply = to_units("1000000", 6)
    token = deploy_token(chain, ANVIL_KEY, name="Treasury USD", symbol="tUSD", decimals=6, supply_units=supply)
    info = chain.token_info(token)
    assert (info.name, info.symbol, info.decimals) == ("Treasury USD", "tUSD", 6)
    assert chain.token_balance(token, ANVIL_ADDRESS) == supply
    assert chain.token_balance(token, "0x000000000000000000000000000000000000dEaD") == 0
    assert chain.allowance(token, ANVIL_ADDRESS, token) == 0
    assert chain.is_contract(token) and not chain.is_contract(ANVIL_ADDRESS)
    assert chain.native_balance(ANVIL_ADDRESS) > 0


def test_unreachable_node_is_a_clear_error() -> None:
    chain = Chain(f"http://127.0.0.1:{stack.free_port()}", timeout_s=1)
    with pytest.raises(ChainUnavailableError, match="eth_chainId at http://127.0.0.1:.* failed"):
        chain.chain_id()


def test_reading_a_token_where_there_is_none_fails_clearly(anvil: str) -> None:
    with pytest.raises(ChainUnavailableError, match=r"name\(\) at .* failed: BadFunctionCallOutput"):
        Chain(anvil).token_info(ANVIL_ADDRESS)
