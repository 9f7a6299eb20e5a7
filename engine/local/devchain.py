"""The local development chain: anvil's published test accounts and the treasury demo token.

``airlock up`` calls :func:`prepare` after starting anvil: it deploys the demo
ERC-20 (``engine/adapters/contracts/TreasuryToken``) from the deployer account, funds the
treasury account with it, and writes the treasury's key as an encrypted
keystore under the state folder, which the worker is pointed at. The accounts
come from anvil's well-known test mnemonic: worthless anywhere but a local node.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from engine.adapters.chain import Chain
from engine.adapters.chain_codec import to_units
from engine.adapters.chain_keys import deploy_token, encrypt_key, key_address, mnemonic_key, transfer_token
from engine.errors import StackError
from engine.private import private_dir, write_private

TEST_MNEMONIC = "test test test test test test test test test test test junk"
DEV_CHAIN_ID = 31337


class TokenInfo(TypedDict):
    """The demo token's constructor arguments, besides its supply."""

    name: str
    symbol: str
    decimals: int


TOKEN: TokenInfo = {"name": "Treasury USD", "symbol": "tUSD", "decimals": 6}
SUPPLY = "10000000"
TREASURY_FUNDING = "100000"


def dev_key(index: int) -> str:
    """The private key of anvil's test account ``index``."""
    return mnemonic_key(TEST_MNEMONIC, index)


def dev_address(index: int) -> str:
    """The address of anvil's test account ``index``."""
    return key_address(dev_key(index))


DEPLOYER, TREASURY = 0, 1
# The first contract the deployer creates on a fresh anvil (nonce 0) always lands here; the demo
# policy data allowlists this address.
DEMO_TOKEN_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@dataclass(frozen=True)
class DevChain:
    """What :func:`prepare` set up."""

    token: str
    treasury: str
    keystore: Path
    password_file: Path
    topped_up: bool = False  # the treasury was low and got its funding back from the deployer


def deploy_demo_token(chain: Chain) -> str:
    """Deploy the demo token from the deployer and move the treasury's share to it (fresh node only)."""
    token = deploy_token(chain, dev_key(DEPLOYER), supply_units=to_units(SUPPLY, TOKEN["decimals"]), **TOKEN)
    transfer_token(chain, dev_key(DEPLOYER), token, dev_address(TREASURY),
                   to_units(TREASURY_FUNDING, TOKEN["decimals"]))
    return token


class BehindStoreError(StackError):
    """The dev chain lacks transactions the store records as mined on it."""


def check_store(chain: Chain, landed: dict[str, int], state_dir: Path, *, started_here: bool = True) -> None:
    """The node must hold every transaction the store records as landed on it (``landed``: sender → highest
    mined nonce). A dev chain that lost its saved state is behind them: sending on it would reuse their nonces.
    ``started_here``: `airlock up` runs this node (else it is one the user runs, and the advice differs).

    Raises:
        BehindStoreError: naming the sender, both nonces and what to do.
    """
    for sender, nonce in sorted(landed.items()):
        if (on_node := chain.nonce(sender, "latest")) > nonce:
            continue
        behind = (f"the local chain at {chain.shown_url} is behind the store: {sender} has sent {on_node} "
                  f"transaction(s) there, but the store records one at nonce {nonce} as mined, and sending now "
                  "would reuse recorded nonces.")
        if started_here:
            raise BehindStoreError(
                f"{behind} The chain lost its saved state (anvil was killed before saving it, or its save was "
                f"removed). Start over: `airlock down`, then move the state folder {state_dir} aside (it holds the "
                "store and the chain's state; `airlock up` makes a new one)")
        raise BehindStoreError(
            f"{behind} That node was not started by `airlock up`: it is not the chain the store recorded them on "
            f"(restarted or reset?). Point AIRLOCK_CHAIN__RPC_URL at that chain, or stop the node and let "
            f"`airlock up` start its own, or use a new state folder instead of {state_dir}")


def prepare(rpc_url: str, state_dir: Path, landed: dict[str, int] | None = None, *,
            started_here: bool = True) -> DevChain:
    """Make the local chain ready for the treasury demo (idempotent), topping the treasury up when it is below
    half its funding (demos run again on a chain that lives on). ``landed``: what the store records as mined on
    this chain (see :func:`check_store`).

    Raises:
        StackError: the node is not a fresh anvil and the demo token is not where the policy expects it.
        BehindStoreError: the node is behind the store.
    """
    chain = Chain(rpc_url)
    if chain.chain_id() != DEV_CHAIN_ID:
        raise StackError(f"{chain.shown_url} is chain {chain.chain_id()}, not the local dev chain {DEV_CHAIN_ID}")
    check_store(chain, landed or {}, state_dir, started_here=started_here)
    topped_up = False
    if not chain.is_contract(DEMO_TOKEN_ADDRESS):
        if chain.nonce(dev_address(DEPLOYER)) != 0:
            raise StackError(f"the demo token is not at {DEMO_TOKEN_ADDRESS} and the deployer account has "
                             "been used on this node; start a fresh anvil (`airlock down`, then `airlock up` on a new "
                             "state folder)")
        token = deploy_demo_token(chain)
        assert token == DEMO_TOKEN_ADDRESS, token
    funding = to_units(TREASURY_FUNDING, TOKEN["decimals"])
    if (held := chain.token_balance(DEMO_TOKEN_ADDRESS, dev_address(TREASURY))) < funding // 2:
        transfer_token(chain, dev_key(DEPLOYER), DEMO_TOKEN_ADDRESS, dev_address(TREASURY), funding - held)
        topped_up = True
    keys = private_dir(state_dir / "keys")
    keystore, password_file = keys / "treasury.keystore.json", keys / "treasury.password"
    if not keystore.exists() or not password_file.exists():
        password = secrets.token_urlsafe(24)
        write_private(password_file, password)
        write_private(keystore, json.dumps(encrypt_key(dev_key(TREASURY), password)))
    return DevChain(token=DEMO_TOKEN_ADDRESS, treasury=dev_address(TREASURY), keystore=keystore,
                    password_file=password_file, topped_up=topped_up)
