"""Each treasury tool against a real anvil: reads, native transfer, approve and revoke, and their facts."""

from __future__ import annotations

import pytest

from engine.adapters.chain_access import ChainAccess
from engine.config import ChainSettings
from engine.errors import ToolExecutionError
from engine.local.devchain import dev_address
from engine.store.db import Database
from engine.toolkit import ToolContext
from tests.conftest import DevChainNode
from tools import treasury as t

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
SPENDER, FRIEND = dev_address(4), dev_address(5)


def context(devchain: DevChainNode, db_url: str, key: str = "run:1:0", signer: bool = True) -> ToolContext:
    settings = ChainSettings(**(devchain.chain_settings() if signer else {"rpc_url": devchain.url}))  # type: ignore[arg-type]
    access = ChainAccess.from_settings(settings, Database(db_url))
    return ToolContext(run_id="run", step=1, idempotency_key=key, database_url=db_url, requested_by="alice",
                       tenant="default").with_chain(access)


def test_reads(devchain: DevChainNode, db_url: str) -> None:
    ctx = context(devchain, db_url)
    assert t.token_metadata(t.TokenArgs(token=devchain.token), ctx) == {
        "token": devchain.token, "name": "Treasury USD", "symbol": "tUSD", "decimals": 6}
    assert t.get_balance(t.BalanceArgs(address=devchain.treasury, token=devchain.token), ctx)["balance"] == "100000"
    assert t.get_balance(t.BalanceArgs(address=FRIEND), ctx) == {"address": FRIEND, "asset": "native",
                                                                 "balance": "10000"}
    with pytest.raises(LookupError, match="no contract at"):
        t.token_metadata(t.TokenArgs(token=FRIEND), ctx)
    assert t.transaction_status(t.TxStatusArgs(tx_hash="0x" + "ab" * 32), ctx)["status"] == "unknown"


def test_native_transfer_with_its_facts(devchain: DevChainNode, db_url: str) -> None:
    ctx = context(devchain, db_url)
    args = t.NativeTransferArgs(chain_id=31337, to=FRIEND, amount="1.25", memo="gas money")
    facts = t.native_transfer_facts(args, ctx)
    assert facts["recipient"] == {"address": FRIEND, "is_contract": False}
    assert [(c["account"], c["delta"]) for c in facts["simulation"]["balance_changes"]] == [
        (devchain.treasury, "-1.25"), (FRIEND, "+1.25")]
    before = devchain.chain.native_balance(FRIEND)
    sent = t.transfer_native(args, ctx)
    assert devchain.chain.native_balance(FRIEND) - before == 1_250_000_000_000_000_000
    status = t.transaction_status(t.TxStatusArgs(tx_hash=sent["tx_hash"]), ctx)
    assert (status["status"], status["confirmations"]) == ("mined", 1)


def test_approve_then_revoke(devchain: DevChainNode, db_url: str) -> None:
    approve = t.ApproveArgs(chain_id=31337, token=devchain.token, spender=SPENDER, amount="300")
    facts = t.approve_facts(approve, context(devchain, db_url))
    assert facts["allowance"] == {"current": "0"} and facts["amount"]["units"] == "300000000"
    assert facts["simulation"]["ok"] and facts["spender"]["is_contract"] is False
    t.approve_token(approve, context(devchain, db_url, "run:1:0"))
    read = t.AllowanceArgs(token=devchain.token, owner=devchain.treasury, spender=SPENDER)
    assert t.get_allowance(read, context(devchain, db_url))["allowance"] == "300"
    t.approve_token(approve.model_copy(update={"amount": "unlimited"}), context(devchain, db_url, "run:2:0"))
    assert t.get_allowance(read, context(devchain, db_url))["allowance"] == "unlimited"
    revoke = t.RevokeArgs(chain_id=31337, token=devchain.token, spender=SPENDER)
    assert t.revoke_facts(revoke, context(devchain, db_url))["allowance"] == {"current": "unlimited"}
    t.revoke_approval(revoke, context(devchain, db_url, "run:3:0"))
    assert t.get_allowance(read, context(devchain, db_url))["allowance"] == "0"
    assert devchain.chain.nonce(devchain.treasury) == 3


def test_facts_stop_at_what_makes_the_rest_meaningless(devchain: DevChainNode, db_url: str) -> None:
    wrong_chain = t.token_transfer_facts(t.TokenTransferArgs(chain_id=1, token=devchain.token, to=FRIEND,
                                                             amount="1"), context(devchain, db_url))
    assert wrong_chain["chain"]["matches"] is False and "simulation" not in wrong_chain
    no_code = t.token_transfer_facts(t.TokenTransferArgs(chain_id=31337, token=FRIEND, to=FRIEND, amount="1"),
                                     context(devchain, db_url))
    assert no_code["token"] == {"address": FRIEND, "has_code": False} and "simulation" not in no_code
    too_precise = t.token_transfer_facts(t.TokenTransferArgs(chain_id=31337, token=devchain.token, to=FRIEND,
                                                             amount="0.0000001"), context(devchain, db_url))
    assert "does not fit a token with 6 decimals" in too_precise["amount"]["error"]


def test_without_a_key_reads_work_and_sends_fail_closed(devchain: DevChainNode, db_url: str) -> None:
    ctx = context(devchain, db_url, signer=False)
    args = t.TokenTransferArgs(chain_id=31337, token=devchain.token, to=FRIEND, amount="1")
    assert t.token_transfer_facts(args, ctx)["sender"] == {"address": None}
    with pytest.raises(ToolExecutionError, match="no signing key is configured"):
        t.transfer_token(args, ctx)
    assert devchain.chain.token_balance(devchain.token, FRIEND) == 0
