"""Treasury tool arguments: addresses, amounts and chain ids are typed before anything reads the chain."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.adapters.chain_codec import decode_revert
from tools.treasury import ApproveArgs, TokenTransferArgs

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ACME = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def transfer(**overrides: object) -> TokenTransferArgs:
    return TokenTransferArgs.model_validate({"chain_id": 31337, "token": TOKEN, "to": ACME, "amount": "10.5",
                                             **overrides})


def test_addresses_are_normalised_to_their_checksum() -> None:
    assert transfer(to=ACME.lower()).to == ACME
    assert transfer(to="0x" + ACME[2:].upper()).to == ACME


@pytest.mark.parametrize(("value", "message"), [
    ("0x3c44CdDdB6a900fa2b585dd299e03d12FA4293BC", "bad EIP-55 checksum (did you mean 0x3C44CdDdB6a900fa2b585dd2"),
    ("0x3C44CdDd", "not an EVM address"),
    ("acme.eth", "not an EVM address"),
])
def test_bad_addresses_are_refused_with_the_reason(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=r"to\n.*" + message.replace("(", r"\(")):
        transfer(to=value)


@pytest.mark.parametrize("amount", ["-1", "1e6", "1,000", "", "0x10", "12.5.1", "\u0663", "1\uff10", " 1", "1\n",
                                    12.5, 3])
def test_amounts_are_plain_decimal_strings(amount: str) -> None:
    with pytest.raises(ValidationError, match="amount"):
        transfer(amount=amount)


def test_chain_id_is_required_and_positive() -> None:
    with pytest.raises(ValidationError, match="chain_id"):
        TokenTransferArgs.model_validate({"token": TOKEN, "to": ACME, "amount": "1"})
    with pytest.raises(ValidationError, match="chain_id"):
        transfer(chain_id=0)


def test_an_approval_is_an_amount_or_unlimited() -> None:
    assert ApproveArgs(chain_id=1, token=TOKEN, spender=ACME, amount="unlimited").amount == "unlimited"
    with pytest.raises(ValidationError):
        ApproveArgs(chain_id=1, token=TOKEN, spender=ACME, amount="infinite")


def test_revert_data_is_decoded() -> None:
    error_string = ("0x08c379a0" + "20".rjust(64, "0") + "0b".rjust(64, "0") + b"not allowed".hex().ljust(64, "0"))
    assert decode_revert(error_string) == "not allowed"
    assert decode_revert("0x4e487b71" + "11".rjust(64, "0")) == "panic 0x11"
    insufficient = ("0xe450d38c" + ACME[2:].lower().rjust(64, "0") + "05".rjust(64, "0") + "0a".rjust(64, "0"))
    assert decode_revert(insufficient) == f"ERC20InsufficientBalance({ACME}, 5, 10)"
    assert decode_revert("0x") == "reverted without a reason"
    assert decode_revert("0xdeadbeef") == "reverted with data 0xdeadbeef"
