"""What crosses the chain adapters as plain values: token amounts, compiled contracts, revert data.

No node is called here. Amounts cross the adapters as integers in the token's
smallest unit; :func:`to_units` / :func:`from_units` convert decimal strings
with the token's real ``decimals``. :func:`artifact` reads the compiled demo
contract (abi, bytecode) shipped under ``engine/adapters/contracts``;
:func:`deploy_data` encodes a constructor call with it, and :func:`decode_revert`
turns revert data into a readable reason. With ``chain`` (the node client), the
only importer of ``eth_abi`` and ``eth_utils``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from engine.errors import InputError
from engine.toolkit import decimal_text

CONTRACTS = Path(__file__).resolve().parent / "contracts"  # package data: abi + bytecode, and their source
MAX_UINT256 = 2**256 - 1


def to_units(amount: str | Decimal, decimals: int) -> int:
    """``"12.5"`` with 6 decimals → ``12500000``, exactly; refuses more precision than the token has.

    Integer arithmetic on the digits: ``Decimal`` arithmetic would round past 28 digits and let
    ``1.00000000000000000000000000001`` through as 1.

    Raises:
        InputError: not an ASCII decimal string, or more fractional digits than ``decimals``.
    """
    text = str(amount)
    try:
        decimal_text(text)  # the rule tools validate amounts with
    except ValueError:
        raise InputError(f"amount {text[:80]!r} is not a decimal number of ASCII digits") from None
    whole, _, fraction = text.partition(".")
    if fraction[decimals:].strip("0"):
        raise InputError(f"amount {text} does not fit a token with {decimals} decimals")
    scale: int = 10**decimals  # typeshed: int ** int is Any (a negative exponent gives a float)
    return int(whole) * scale + int(fraction[:decimals].ljust(decimals, "0") or "0")


def from_units(units: int, decimals: int) -> str:
    """``12500000`` with 6 decimals → ``"12.5"``, exactly (also for 78-digit amounts)."""
    whole, fraction = divmod(abs(units), 10**decimals)
    text = str(whole) + (f".{fraction:0{decimals}d}".rstrip("0") if fraction else "")
    return "-" + text if units < 0 else text


@cache
def artifact(name: str) -> dict[str, Any]:
    """A compiled contract (``engine/adapters/contracts/<name>.json``: abi, bytecode), read once; do not mutate."""
    compiled: dict[str, Any] = json.loads((CONTRACTS / f"{name}.json").read_text())
    return compiled


def deploy_data(name: str, *args: Any) -> str:
    """The 0x-hex data of a transaction deploying the compiled contract ``name`` with constructor ``args``."""
    compiled = artifact(name)
    constructor: dict[str, Any] = next((e for e in compiled["abi"] if e["type"] == "constructor"), {"inputs": []})
    encoded = abi_encode([i["type"] for i in constructor["inputs"]], list(args))
    return "0x" + str(compiled["bytecode"]).removeprefix("0x") + encoded.hex()


_ERROR_STRING = function_signature_to_4byte_selector("Error(string)")
_PANIC = function_signature_to_4byte_selector("Panic(uint256)")


def _custom_errors() -> dict[bytes, tuple[str, list[str]]]:
    errors = {}
    for entry in artifact("TreasuryToken")["abi"]:
        if entry["type"] == "error":
            types = [i["type"] for i in entry["inputs"]]
            errors[function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")] = (entry["name"], types)
    return errors


def decode_revert(data: str | bytes | None) -> str:
    """A readable revert reason from revert data: ``Error(string)``, ``Panic(code)`` or an ERC-20 custom error."""
    if isinstance(data, str):
        text = data
        try:
            data = bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            return text or "reverted without a reason"
    if not data:
        return "reverted without a reason"
    selector, body = bytes(data[:4]), bytes(data[4:])
    try:
        if selector == _ERROR_STRING:
            return str(abi_decode(["string"], body)[0])
        if selector == _PANIC:
            return f"panic 0x{abi_decode(['uint256'], body)[0]:02x}"
        known = _custom_errors().get(selector)
        if known:
            name, types = known
            values = abi_decode(types, body)
            shown = ", ".join(to_checksum_address(v) if t == "address" else str(v)
                              for t, v in zip(types, values, strict=True))
            return f"{name}({shown})"
    except Exception:  # noqa: BLE001 - undecodable data is still reported, as hex
        pass
    return "reverted with data 0x" + bytes(data).hex()
