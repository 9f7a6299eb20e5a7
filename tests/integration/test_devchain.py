"""The local dev chain against a real anvil: a treasury that demos ran low is topped up, and a chain behind the
store's mined transactions is refused with both nonces; anvil's saves are taken only when whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.adapters.chain_keys import transfer_token
from engine.local import devchain as dev
from engine.local.stack import ANVIL_SAVING, ANVIL_STATE, _saved_chain
from tests.conftest import DevChainNode

pytestmark = pytest.mark.integration
FUNDING = int(dev.TREASURY_FUNDING) * 10**6


def test_a_treasury_below_half_its_funding_is_topped_up_and_only_then(devchain: DevChainNode,
                                                                      tmp_path: Path) -> None:
    spent = transfer_token(devchain.chain, dev.dev_key(dev.TREASURY), devchain.token, dev.dev_address(2),
                           FUNDING // 2 - 1)  # as demos do: just under half spent
    assert spent
    assert devchain.chain.token_balance(devchain.token, devchain.treasury) == FUNDING // 2 + 1
    assert not dev.prepare(devchain.url, tmp_path / "state").topped_up  # still half: nothing moved
    transfer_token(devchain.chain, dev.dev_key(dev.TREASURY), devchain.token, dev.dev_address(2), 2)
    assert dev.prepare(devchain.url, tmp_path / "state").topped_up
    assert devchain.chain.token_balance(devchain.token, devchain.treasury) == FUNDING
    assert devchain.chain.token_balance(devchain.token, dev.dev_address(2)) == FUNDING // 2 + 1  # nothing taken back


def test_a_chain_behind_the_store_is_refused_naming_the_sender_and_both_nonces(devchain: DevChainNode,
                                                                               tmp_path: Path) -> None:
    treasury = devchain.treasury
    transfer_token(devchain.chain, dev.dev_key(dev.TREASURY), devchain.token, dev.dev_address(2), 1)  # nonce 0
    dev.prepare(devchain.url, tmp_path, {treasury: 0})  # the store's mined nonce 0 is on the node: fine
    with pytest.raises(dev.BehindStoreError) as ours:
        dev.prepare(devchain.url, tmp_path, {treasury: 0, dev.dev_address(5): 3})
    assert (f"{dev.dev_address(5)} has sent 0 transaction(s) there, but the store records one at nonce 3 as mined"
            in str(ours.value))
    assert f"move the state folder {tmp_path} aside" in str(ours.value)
    with pytest.raises(dev.BehindStoreError) as theirs:
        dev.prepare(devchain.url, tmp_path, {treasury: 1}, started_here=False)
    assert f"{treasury} has sent 1 transaction(s) there, but the store records one at nonce 1" in str(theirs.value)
    assert "not started by `airlock up`" in str(theirs.value) and "AIRLOCK_CHAIN__RPC_URL" in str(theirs.value)


def test_anvils_latest_save_is_taken_only_when_whole(tmp_path: Path) -> None:
    said: list[str] = []
    (tmp_path / ANVIL_STATE).write_text(json.dumps({"block": 1}))
    (tmp_path / ANVIL_SAVING).write_text(json.dumps({"block": 2}))
    assert _saved_chain(tmp_path, said.append) == tmp_path / ANVIL_STATE
    assert json.loads((tmp_path / ANVIL_STATE).read_text()) == {"block": 2} and not (tmp_path / ANVIL_SAVING).exists()
    (tmp_path / ANVIL_SAVING).write_text('{"block": 3, "accounts": {"0x')  # cut off mid-write
    assert _saved_chain(tmp_path, said.append) == tmp_path / ANVIL_STATE
    assert json.loads((tmp_path / ANVIL_STATE).read_text()) == {"block": 2}
    assert said == [f"anvil: its latest save {tmp_path / ANVIL_SAVING} is incomplete (anvil stopped while writing "
                    f"it); starting from the one before, {tmp_path / ANVIL_STATE}"]
