"""Work done with a private key outside the boundary: the local dev chain's accounts and set-up.

:func:`mnemonic_key`, :func:`key_address` and :func:`encrypt_key` derive anvil's
published test accounts and write the keystore the worker's signer reads;
:func:`deploy_token` and :func:`transfer_token` deploy and fund the demo token
from such an account. The transactions are signed here and sent through the
node client (:class:`engine.adapters.chain.Chain`): no record, no retry, so set-up
and tests only; agents' transactions go through the boundary (``chain_tx``).
Keys are passed in, used to sign, and never logged. With ``chain_tx``, the only
importer of ``eth_account``.
"""

from __future__ import annotations

import time
from typing import Any

from eth_account import Account
from eth_typing import HexStr

from engine.adapters.chain import Chain, Receipt, checked_address
from engine.adapters.chain_codec import deploy_data
from engine.errors import ChainUnavailableError

RECEIPT_TIMEOUT_S = 30.0


def mnemonic_key(mnemonic: str, index: int) -> str:
    """The private key (0x-hex) of account ``index`` of a BIP-39 mnemonic (path ``m/44'/60'/0'/0/index``).

    For the local dev chain's published test accounts. eth-account calls its mnemonic support
    unaudited and wants it switched on: that happens here, on first use, not at import.
    """
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(account.key).hex()


def key_address(private_key: str) -> str:
    """The checksummed address of a private key's account."""
    return str(Account.from_key(private_key).address)


def encrypt_key(private_key: str, password: str) -> dict[str, Any]:
    """An encrypted keystore document of the key: what ``chain_tx.Signer.from_settings`` decrypts."""
    return dict(Account.encrypt(HexStr(private_key), password))


def deploy_token(chain: Chain, private_key: str, *, name: str, symbol: str, decimals: int,
                 supply_units: int) -> str:
    """Deploy the demo ERC-20 from the key's account; return its address."""
    data = deploy_data("TreasuryToken", name, symbol, decimals, supply_units)
    receipt = send_direct(chain, private_key, {"data": data}, f"deploying {symbol}")
    if receipt.contract_address is None:
        raise ChainUnavailableError(f"deploying {symbol}: the receipt of {receipt.tx_hash} names no contract")
    return receipt.contract_address


def transfer_token(chain: Chain, private_key: str, token: str, to: str, units: int) -> str:
    """Move tokens from the key's account (set-up and tests; agents go through the boundary); return the tx hash."""
    data = chain.erc20_data("transfer", checked_address(to), units)
    receipt = send_direct(chain, private_key, {"to": checked_address(token), "data": data}, "token transfer")
    return receipt.tx_hash


def send_direct(chain: Chain, private_key: str, tx: dict[str, Any], what: str) -> Receipt:
    """Sign, send and await one transaction (``to``, ``data``, ``value``) outside the boundary.

    Set-up only: no record, no retry.

    Raises:
        TransactionRevertedError: it would revert (nothing sent).
        ChainUnavailableError: the node failed, the receipt did not come in time, or it reverted when mined.
    """
    account = Account.from_key(private_key)
    call = {**tx, "from": account.address}
    full = {key: value for key, value in tx.items() if value is not None}
    full.update(chainId=chain.chain_id(), nonce=chain.nonce(account.address), gas=chain.estimate_gas(call),
                **chain.fees())
    signed = account.sign_transaction(full)
    tx_hash = "0x" + bytes(signed.hash).hex()
    chain.send_raw("0x" + bytes(signed.raw_transaction).hex())
    deadline = time.monotonic() + RECEIPT_TIMEOUT_S
    while (receipt := chain.receipt(tx_hash)) is None:
        if time.monotonic() > deadline:
            raise ChainUnavailableError(f"{what}: transaction {tx_hash} not mined after {RECEIPT_TIMEOUT_S:g}s")
        time.sleep(0.1)
    if receipt.status != 1:
        raise ChainUnavailableError(f"{what} reverted (tx {tx_hash})")
    return receipt
