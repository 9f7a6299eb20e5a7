"""Token amounts convert with the token's real decimals; the committed contract matches its source."""

from __future__ import annotations

import hashlib

import pytest

from engine.chain import CONTRACTS, artifact, from_units, to_units
from engine.errors import InputError


@pytest.mark.parametrize("amount, decimals, units", [("12.5", 6, 12_500_000), ("1", 18, 10**18), ("0", 6, 0),
                                                     ("0.000001", 6, 1)])
def test_to_units_and_back(amount: str, decimals: int, units: int) -> None:
    assert to_units(amount, decimals) == units
    assert from_units(units, decimals) == amount


@pytest.mark.parametrize("amount", ["0.0000001", "-1", "lots", "1e400x"])
def test_to_units_refuses_what_the_token_cannot_hold(amount: str) -> None:
    with pytest.raises(InputError):
        to_units(amount, 6)


def test_committed_artifact_was_built_from_the_committed_source() -> None:
    built = artifact("TreasuryToken")
    source = (CONTRACTS / built["source"]).read_text()
    assert built["sourceSha256"] == hashlib.sha256(source.encode()).hexdigest(), \
        "rebuild: cd tools/contracts && npm install && npm run build"
    assert built["bytecode"].startswith("0x60") and any(i.get("name") == "transfer" for i in built["abi"])
