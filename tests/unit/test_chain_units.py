"""Token amounts convert with the token's real decimals; the committed contract matches its source."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from engine.adapters.chain_codec import CONTRACTS, MAX_UINT256, artifact, from_units, to_units
from engine.errors import InputError


@pytest.mark.parametrize("amount, decimals, units", [("12.5", 6, 12_500_000), ("1", 18, 10**18), ("0", 6, 0),
                                                     ("0.000001", 6, 1)])
def test_to_units_and_back(amount: str, decimals: int, units: int) -> None:
    assert to_units(amount, decimals) == units
    assert from_units(units, decimals) == amount


@pytest.mark.parametrize("amount", ["0.0000001", "-1", "lots", "1e400x", "1e2", " 1", "1.", ".5"])
def test_to_units_refuses_what_the_token_cannot_hold(amount: str) -> None:
    with pytest.raises(InputError):
        to_units(amount, 6)


# Arabic-Indic, full-width and Bengali digits
@pytest.mark.parametrize("amount", ["\u0663", "\u0661\u0662.5", "\uff11", "\u09e8"])
def test_only_ascii_digits_are_amounts(amount: str) -> None:
    assert Decimal(amount) > 0  # what used to read them as numbers
    with pytest.raises(InputError, match="not a decimal number of ASCII digits"):
        to_units(amount, 6)


def test_precision_is_checked_exactly_past_28_digits() -> None:
    # Decimal arithmetic rounds to 28 significant digits: this used to become exactly 1 token.
    with pytest.raises(InputError, match="does not fit a token with 6 decimals"):
        to_units("1.00000000000000000000000000001", 6)
    assert to_units("1.000000000000000000000000000000", 6) == 10**6  # trailing zeros add no precision
    assert to_units("123456789012345678901234567890.123456789012345678", 18) == \
        123456789012345678901234567890123456789012345678


def test_huge_amounts_round_trip_exactly() -> None:
    assert from_units(MAX_UINT256, 18) == ("115792089237316195423570985008687907853269984665640564039457"
                                           ".584007913129639935")
    assert to_units(from_units(10**48 - 1, 18), 18) == 10**48 - 1  # 30 whole digits: the most an amount has
    assert from_units(5, 0) == "5" and to_units("5", 0) == 5
    with pytest.raises(InputError):
        to_units("5.1", 0)


def test_committed_artifact_was_built_from_the_committed_source() -> None:
    built = artifact("TreasuryToken")
    source = (CONTRACTS / built["source"]).read_text()
    assert built["sourceSha256"] == hashlib.sha256(source.encode()).hexdigest(), \
        "rebuild: cd engine/adapters/contracts && npm install && npm run build"
    assert built["bytecode"].startswith("0x60") and any(i.get("name") == "transfer" for i in built["abi"])
