"""Chain adapter: the client of one JSON-RPC node, the only importer of ``web3``; translates its errors.

Reads (chain id, balances, token metadata, allowance, code, nonce, fees), the
checks made before a transaction is signed (gas estimate, ``eth_simulateV1``),
broadcasting transactions signed elsewhere, and their receipts and revert
reasons. It holds no key: signing is ``chain_tx`` (the boundary's sender) and
``chain_keys`` (the local dev chain's set-up); values (amounts, contract
artifacts, revert data) are ``chain_codec``. Errors name the node by
:attr:`Chain.shown_url` and carry no trace of its key: the library's message is
redacted, and not chained (Temporal records every cause).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import requests
from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3Exception
from web3.types import RPCEndpoint, TxParams

from engine.adapters.chain_codec import artifact, decode_revert
from engine.errors import ChainUnavailableError, TransactionRevertedError
from engine.redact import redact_text, safe_url

T = TypeVar("T")

_RPC_ERRORS = (requests.RequestException, Web3Exception, ConnectionError, TimeoutError, ValueError)


def checksum(value: str) -> str | None:
    """The EIP-55 checksummed form of a hex address, or None if ``value`` is not one."""
    if isinstance(value, str) and Web3.is_address(value):
        return Web3.to_checksum_address(value)
    return None


def checked_address(value: str) -> str:
    """``value`` in its EIP-55 checksummed form, for addresses typed by a model or a person.

    Accepts ``0x`` and 40 hex digits, all lower case, all upper case, or mixed case with the right checksum.

    Raises:
        ValueError: not such an address, or mixed case with a wrong checksum (the message names the right form).
    """
    if not (isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{40}", value)):
        raise ValueError("not an EVM address (0x followed by 40 hex digits)")
    checksummed = Web3.to_checksum_address(value)
    if value not in (checksummed, value.lower(), "0x" + value[2:].upper()):
        raise ValueError(f"bad EIP-55 checksum (did you mean {checksummed}?)")
    return checksummed


class _Reverted(ChainUnavailableError):
    """A read the contract reverted (``reason`` decoded), as :meth:`Chain.estimate_gas` tells apart."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _revert_reason(exc: ContractLogicError) -> str:
    data = exc.data if isinstance(exc.data, (str, bytes)) else None
    if data and str(data) not in ("0x", ""):
        return decode_revert(data)
    message = str(exc.message or exc).removeprefix("execution reverted: ").removeprefix("execution reverted")
    return message or "reverted without a reason"


@dataclass(frozen=True)
class Receipt:
    """What the chain says about a mined transaction."""

    tx_hash: str
    status: int
    block_number: int
    gas_used: int
    contract_address: str | None = None  # what a deployment created


@dataclass(frozen=True)
class TokenInfo:
    """What the token contract says about itself."""

    address: str
    name: str
    symbol: str
    decimals: int


class Chain:
    """One JSON-RPC endpoint."""

    def __init__(self, rpc_url: str, timeout_s: float = 10.0) -> None:
        self._w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
        self._erc20_abi = artifact("TreasuryToken")["abi"]
        self.rpc_url = rpc_url
        # What errors (and so histories, the record and the model) show: no key-like path segment, no query.
        self.shown_url = safe_url(rpc_url)

    def _shown(self, text: str) -> str:
        return redact_text(text, self.rpc_url)

    def _read(self, what: str, call: Callable[[], T]) -> T:
        # ``from None``: the library's exception, which holds the URL, must not travel as the cause.
        try:
            return call()
        except ContractLogicError as exc:
            raise _Reverted(self._shown(f"{what}: the contract reverted: {exc}"),
                            reason=self._shown(_revert_reason(exc))) from None
        except _RPC_ERRORS as exc:
            raise ChainUnavailableError(self._shown(f"{what} at {self.shown_url} failed: {type(exc).__name__}: "
                                                    f"{exc}")) from None

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

    # --- transactions (signed elsewhere) -------------------------------------------------

    def nonce(self, address: str, block: Literal["pending", "latest"] | int = "pending") -> int:
        """The next nonce of ``address``: by default counting the transactions the node's pool holds ready to
        be mined (``"pending"``; not those queued behind a missing nonce), else as of a block."""
        return int(self._read("eth_getTransactionCount",
                              lambda: self._w3.eth.get_transaction_count(Web3.to_checksum_address(address), block)))

    def block_number(self) -> int:
        """The latest block."""
        return int(self._read("eth_blockNumber", lambda: self._w3.eth.block_number))

    def fees(self) -> dict[str, int]:
        """EIP-1559 fees for a transaction now: twice the base fee plus the suggested tip."""
        def read() -> dict[str, int]:
            base = int(self._w3.eth.get_block("latest").get("baseFeePerGas") or 0)
            tip = int(self._w3.eth.max_priority_fee)
            return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}
        return dict(self._read("fee data", read))

    def erc20_data(self, function: str, *args: Any) -> str:
        """Calldata of an ERC-20 function call (``transfer``, ``approve``)."""
        return str(self._token(Web3.to_checksum_address(ERC20_PLACEHOLDER)).encode_abi(function, args=list(args)))

    def estimate_gas(self, tx: dict[str, Any]) -> int:
        """Gas the transaction needs.

        Raises:
            TransactionRevertedError: it would revert (reason decoded).
        """
        try:
            return int(self._read("eth_estimateGas", lambda: self._w3.eth.estimate_gas(_call(tx))))
        except _Reverted as exc:
            raise TransactionRevertedError(f"the transaction would revert: {exc.reason}", reason=exc.reason) from exc

    def simulate(self, tx: dict[str, Any], watch: list[tuple[str, str | None]]) -> dict[str, Any]:
        """Run ``tx`` on the latest state without sending it (``eth_simulateV1``) and report balance changes.

        ``watch`` is a list of (account, token) pairs; token None means the native
        coin. ERC-20 balances are read by ``balanceOf`` calls before and after the
        transaction inside the simulated block; native balances move by the
        transaction's value (gas is reported apart, as ``gas_used``).
        """
        reads = [(account, token) for account, token in watch if token]
        calls = [_call({"from": tx["from"], "to": t, "data": self.erc20_data("balanceOf", Web3.to_checksum_address(a))})
                 for a, t in reads]
        payload = [{"blockStateCalls": [{"calls": [*calls, _call(tx), *calls]}], "validation": False}, "latest"]
        response = self._read("eth_simulateV1", lambda: self._w3.provider.make_request(RPCEndpoint("eth_simulateV1"),
                                                                                           payload))
        if "error" in response:
            raise ChainUnavailableError(self._shown(f"eth_simulateV1 at {self.shown_url} failed: "
                                                    f"{response['error']}"))
        results = response["result"][0]["calls"]
        main = results[len(reads)]
        ok = int(main["status"], 16) == 1
        out: dict[str, Any] = {"method": "eth_simulateV1", "ok": ok, "gas_used": int(main["gasUsed"], 16),
                               "revert_reason": None if ok else decode_revert((main.get("error") or {}).get("data")
                                                                              or main.get("returnData")),
                               "balance_changes": []}
        for i, (account, token) in enumerate(reads):
            before = int(results[i]["returnData"], 16)
            after = int(results[len(reads) + 1 + i]["returnData"], 16) if ok else before
            out["balance_changes"].append({"account": Web3.to_checksum_address(account), "asset": token,
                                           "before": before, "after": after, "delta": after - before})
        value = int(tx.get("value") or 0)
        for account, asset in watch:
            if asset is None:
                before = self.native_balance(account)
                sign = -1 if Web3.to_checksum_address(account) == Web3.to_checksum_address(tx["from"]) else 1
                delta = sign * value if ok else 0
                out["balance_changes"].append({"account": Web3.to_checksum_address(account), "asset": None,
                                               "before": before, "after": before + delta, "delta": delta})
        return out

    def send_raw(self, raw: str) -> None:
        """Broadcast a signed transaction; one the node already has is not an error."""
        try:
            self._read("eth_sendRawTransaction", lambda: self._w3.eth.send_raw_transaction(HexStr(raw)))
        except ChainUnavailableError as exc:
            if "already known" in str(exc).lower() or "already imported" in str(exc).lower():
                return
            raise

    def known(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction (pending or mined)."""
        def read() -> bool:
            try:
                self._w3.eth.get_transaction(HexStr(tx_hash))
                return True
            except TransactionNotFound:
                return False
        return bool(self._read("eth_getTransactionByHash", read))

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined transaction, or None while it is not mined."""
        def read() -> Receipt | None:
            try:
                r = self._w3.eth.get_transaction_receipt(HexStr(tx_hash))
            except TransactionNotFound:
                return None
            created = r.get("contractAddress")
            return Receipt(tx_hash=tx_hash, status=int(r["status"]), block_number=int(r["blockNumber"]),
                           gas_used=int(r["gasUsed"]), contract_address=str(created) if created else None)
        return self._read("eth_getTransactionReceipt", read)

    def revert_reason(self, tx_hash: str, tx: dict[str, Any], block_number: int) -> str:
        """Why a mined transaction reverted.

        The node's call trace of the transaction itself comes first (``debug_traceTransaction``
        with the call tracer: exact, even when an earlier transaction of the same block changed
        the state it met); nodes without it get a replay by ``eth_call`` on the block before.
        """
        try:
            reply = self._w3.provider.make_request(RPCEndpoint("debug_traceTransaction"),
                                                 [tx_hash, {"tracer": "callTracer"}])
            trace = reply.get("result") or {}
            if trace.get("output") or trace.get("error"):
                output = trace.get("output")
                return decode_revert(output) if output and output != "0x" else str(trace.get("error"))
        except _RPC_ERRORS:
            pass
        try:
            self._w3.eth.call(_call(tx), block_identifier=max(block_number - 1, 0))
        except ContractLogicError as exc:
            return _revert_reason(exc)
        except _RPC_ERRORS as exc:
            return f"reverted (reason unavailable: {type(exc).__name__})"
        return "reverted (no reason available: the state it met was changed within its block)"


ERC20_PLACEHOLDER = "0x0000000000000000000000000000000000000001"


def _tx_params(tx: dict[str, Any]) -> TxParams:
    """``tx`` as web3's ``TxParams``.

    A cast: web3 formats what it is given, so it takes hex-string quantities and plain-string
    addresses and calldata, where ``TxParams`` names ``Wei``, ``ChecksumAddress`` and ``HexStr``.
    """
    return cast(TxParams, tx)


def _call(tx: dict[str, Any]) -> TxParams:
    """A call object for ``eth_call`` / ``eth_estimateGas`` / ``eth_simulateV1`` (hex quantities).

    Without ``to`` it is a deployment (``data`` is the contract's code and constructor arguments).
    """
    out: dict[str, Any] = {"from": Web3.to_checksum_address(tx["from"])}
    if tx.get("to"):
        out["to"] = Web3.to_checksum_address(tx["to"])
    if tx.get("data"):
        out["data"] = tx["data"]
    if tx.get("value"):
        out["value"] = hex(int(tx["value"]))
    return _tx_params(out)
