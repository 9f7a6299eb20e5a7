"""Chain adapter: the only importer of ``web3``; translates its errors.

Read-only calls (chain id, balances, token metadata, allowance, code) and the
deployment of the demo token. Amounts cross this module as integers in the
token's smallest unit; :func:`to_units` / :func:`from_units` convert decimal
strings with the token's real ``decimals``. Keys never leave this module's
callers' settings: they are passed in, used to sign, and never logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import requests
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

from engine.errors import ChainUnavailableError, InputError

CONTRACTS = Path(__file__).resolve().parent.parent / "tools" / "contracts"
_RPC_ERRORS = (requests.RequestException, Web3Exception, ConnectionError, TimeoutError, ValueError)


def checksum(value: str) -> str | None:
    """The EIP-55 checksummed form of a hex address, or None if ``value`` is not one."""
    if isinstance(value, str) and Web3.is_address(value):
        return Web3.to_checksum_address(value)
    return None


def to_units(amount: str | Decimal, decimals: int) -> int:
    """``"12.5"`` with 6 decimals → ``12500000``; refuses more precision than the token has.

    Raises:
        InputError: not a non-negative decimal, or too many fractional digits.
    """
    try:
        value = Decimal(str(amount))
    except InvalidOperation as exc:
        raise InputError(f"amount {amount!r} is not a decimal number") from exc
    scaled = value.scaleb(decimals)
    if value < 0 or scaled != scaled.to_integral_value():
        raise InputError(f"amount {amount} does not fit a token with {decimals} decimals")
    return int(scaled)


def from_units(units: int, decimals: int) -> str:
    """``12500000`` with 6 decimals → ``"12.5"``."""
    return format(Decimal(units).scaleb(-decimals).normalize(), "f")


@dataclass(frozen=True)
class TokenInfo:
    """What the token contract says about itself."""

    address: str
    name: str
    symbol: str
    decimals: int


def artifact(name: str) -> dict[str, Any]:
    """A compiled contract (``tools/contracts/<name>.json``: abi, bytecode)."""
    return json.loads((CONTRACTS / f"{name}.json").read_text())


class Chain:
    """One JSON-RPC endpoint."""

    def __init__(self, rpc_url: str, timeout_s: float = 10.0) -> None:
        self._w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
        self._erc20_abi = artifact("TreasuryToken")["abi"]
        self.rpc_url = rpc_url

    def _read(self, what: str, call: Any) -> Any:
        try:
            return call()
        except ContractLogicError as exc:
            raise ChainUnavailableError(f"{what}: the contract reverted: {exc}") from exc
        except _RPC_ERRORS as exc:
            raise ChainUnavailableError(f"{what} at {self.rpc_url} failed: {type(exc).__name__}: {exc}") from exc

    def chain_id(self) -> int:
        """The node's chain id."""
        return int(self._read("eth_chainId", lambda: self._w3.eth.chain_id))

    def native_balance(self, address: str) -> int:
        """Wei held by ``address``."""
        return int(self._read("eth_getBalance", lambda: self._w3.eth.get_balance(Web3.to_checksum_address(address))))

    def is_contract(self, address: str) -> bool:
        """Whether code is deployed at ``address``."""
        code = self._read("eth_getCode", lambda: self._w3.eth.get_code(Web3.to_checksum_address(address)))
        return len(code) > 0

    def _token(self, token: str) -> Any:
        return self._w3.eth.contract(address=Web3.to_checksum_address(token), abi=self._erc20_abi)

    def token_info(self, token: str) -> TokenInfo:
        """Name, symbol and decimals, read from the contract."""
        contract = self._token(token)
        return TokenInfo(address=Web3.to_checksum_address(token),
                         name=self._read("name()", contract.functions.name().call),
                         symbol=self._read("symbol()", contract.functions.symbol().call),
                         decimals=int(self._read("decimals()", contract.functions.decimals().call)))

    def token_balance(self, token: str, owner: str) -> int:
        """Smallest units of ``token`` held by ``owner``."""
        fn = self._token(token).functions.balanceOf(Web3.to_checksum_address(owner))
        return int(self._read("balanceOf()", fn.call))

    def allowance(self, token: str, owner: str, spender: str) -> int:
        """Smallest units ``spender`` may move from ``owner``."""
        fn = self._token(token).functions.allowance(Web3.to_checksum_address(owner), Web3.to_checksum_address(spender))
        return int(self._read("allowance()", fn.call))

    def deploy_token(self, private_key: str, *, name: str, symbol: str, decimals: int, supply_units: int) -> str:
        """Deploy the demo ERC-20 from the key's account; return its address."""
        compiled = artifact("TreasuryToken")
        account = self._w3.eth.account.from_key(private_key)
        factory = self._w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])

        def send() -> str:
            tx = factory.constructor(name, symbol, decimals, supply_units).build_transaction({
                "from": account.address, "nonce": self._w3.eth.get_transaction_count(account.address, "pending"),
                "chainId": self._w3.eth.chain_id})
            signed = account.sign_transaction(tx)
            receipt = self._w3.eth.wait_for_transaction_receipt(self._w3.eth.send_raw_transaction(signed.raw_transaction))
            if receipt.status != 1:
                raise ChainUnavailableError(f"deploying {symbol} reverted (tx {receipt.transactionHash.hex()})")
            return str(receipt.contractAddress)

        return str(self._read(f"deploying {symbol}", send))
