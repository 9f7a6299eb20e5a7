"""Chain adapter: the only importer of ``web3``.

For now it renders addresses; the chain boundary (facts, simulation,
execution) builds on it.
"""

from __future__ import annotations

from web3 import Web3


def checksum(value: str) -> str | None:
    """The EIP-55 checksummed form of a hex address, or None if ``value`` is not one."""
    if isinstance(value, str) and Web3.is_address(value):
        return Web3.to_checksum_address(value)
    return None
