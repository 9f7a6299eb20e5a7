"""The dev chain's accounts come from the chain adapter: anvil's published addresses, keystores the sender reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from engine.adapters.chain_keys import encrypt_key
from engine.adapters.chain_tx import Signer
from engine.config import ChainSettings
from engine.local.devchain import DEPLOYER, TREASURY, dev_address, dev_key


def test_anvils_published_accounts() -> None:
    assert dev_address(DEPLOYER) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert dev_address(TREASURY) == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert dev_key(DEPLOYER) == "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def test_an_encrypted_key_is_what_the_sender_decrypts(tmp_path: Path) -> None:
    keystore = tmp_path / "treasury.keystore.json"
    keystore.write_text(json.dumps(encrypt_key(dev_key(TREASURY), "pw")))
    signer = Signer.from_settings(ChainSettings(keystore_path=keystore, keystore_password=SecretStr("pw")))
    assert signer is not None and signer.address == dev_address(TREASURY)


def test_importing_the_dev_chain_does_no_key_work() -> None:
    code = ("import engine.local.devchain\nfrom eth_account import Account\n"
            "assert not Account._use_unaudited_hdwallet_features")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
