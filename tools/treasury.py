"""Treasury tools: read the chain, and move native coin and ERC-20 tokens under the boundary.

Read tools answer from the node. Consequential tools never sign anything the
model gives them: their arguments are typed (checksummed addresses, decimal
amounts in token units, the chain id), their ``facts`` function reads the
chain (node chain id, balances, token code and metadata, recipient kind,
allowance, nonce, gas, and an ``eth_simulateV1`` run of the exact
transaction with the balance changes it causes) for the policy and the
approver, and execution goes through the worker's sender, which signs with a
key the model never sees and sends each action at most once.

Facts under ``volatile`` (nonce, gas, fees, block) are shown but do not make
an approval stale; every other fact is checked again right before sending.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from engine.adapters.chain import Chain, checked_address
from engine.adapters.chain_access import ChainAccess
from engine.adapters.chain_codec import MAX_UINT256, from_units, to_units
from engine.errors import ChainUnavailableError, InputError, ToolExecutionError, TransactionRevertedError
from engine.toolkit import DecimalString, ToolContext, tool

Address = Annotated[str, AfterValidator(checked_address), Field(description="EVM address, EIP-55 checksummed")]
Amount = Annotated[DecimalString, Field(description="Decimal amount in token units, e.g. \"250.5\"")]
ChainId = Annotated[int, Field(ge=1, le=2**63 - 1, description="Chain id the action is meant for (anvil: 31337)")]
Memo = Annotated[str, Field(default="", max_length=200, description="What the payment is for (invoice number)")]


# --- read tools ---------------------------------------------------------------------------


class BalanceArgs(BaseModel):
    """Arguments of ``get_balance``."""

    address: Address
    token: Address | None = Field(default=None, description="ERC-20 token; omit for the native coin")


# the asset symbol is what the token's deployer wrote into its contract: not vouched for
@tool(trusted=["address", "token", "balance"])
def get_balance(args: BalanceArgs, ctx: ToolContext) -> dict[str, Any]:
    """Balance of an address, in the native coin or an ERC-20 token."""
    chain = _access(ctx).chain
    if args.token is None:
        return {"address": args.address, "asset": "native", "balance": from_units(chain.native_balance(args.address),
                                                                                  18)}
    info = chain.token_info(args.token)
    return {"address": args.address, "asset": info.symbol, "token": info.address,
            "balance": from_units(chain.token_balance(args.token, args.address), info.decimals)}


class AllowanceArgs(BaseModel):
    """Arguments of ``get_allowance``."""

    token: Address
    owner: Address
    spender: Address


@tool(trusted=["token", "owner", "spender", "allowance"])  # read from the node; the symbol is the deployer's
def get_allowance(args: AllowanceArgs, ctx: ToolContext) -> dict[str, Any]:
    """How much of a token a spender may still move from an owner."""
    chain = _access(ctx).chain
    info = chain.token_info(args.token)
    units = chain.allowance(args.token, args.owner, args.spender)
    return {"token": info.address, "asset": info.symbol, "owner": args.owner, "spender": args.spender,
            "allowance": "unlimited" if units == MAX_UINT256 else from_units(units, info.decimals)}


class TokenArgs(BaseModel):
    """Arguments of ``token_metadata``."""

    token: Address


@tool(trusted=["token", "decimals"])  # a name and symbol say whatever the token's deployer wrote
def token_metadata(args: TokenArgs, ctx: ToolContext) -> dict[str, Any]:
    """Name, symbol and decimals of an ERC-20 token, read from its contract."""
    chain = _access(ctx).chain
    if not chain.is_contract(args.token):
        raise LookupError(f"no contract at {args.token}")
    info = chain.token_info(args.token)
    return {"token": info.address, "name": info.name, "symbol": info.symbol, "decimals": info.decimals}


class TxStatusArgs(BaseModel):
    """Arguments of ``transaction_status``."""

    tx_hash: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="Transaction hash")


@tool(trusted=["tx_hash", "status"])  # read from the node; its numbers (block, gas) are no amount's source
def transaction_status(args: TxStatusArgs, ctx: ToolContext) -> dict[str, Any]:
    """Whether a transaction is pending, mined or reverted, and its confirmations."""
    chain = _access(ctx).chain
    receipt = chain.receipt(args.tx_hash)
    if receipt is None:
        return {"tx_hash": args.tx_hash, "status": "pending" if chain.known(args.tx_hash) else "unknown"}
    return {"tx_hash": args.tx_hash, "status": "mined" if receipt.status == 1 else "reverted",
            "block": receipt.block_number, "confirmations": chain.block_number() - receipt.block_number + 1,
            "gas_used": receipt.gas_used}


# --- consequential tools -------------------------------------------------------------------


class NativeTransferArgs(BaseModel):
    """Arguments of ``transfer_native``."""

    chain_id: ChainId
    to: Address
    amount: Amount
    memo: Memo


class TokenTransferArgs(BaseModel):
    """Arguments of ``transfer_token``."""

    chain_id: ChainId
    token: Address
    to: Address
    amount: Amount
    memo: Memo


class ApproveArgs(BaseModel):
    """Arguments of ``approve_token``."""

    chain_id: ChainId
    token: Address
    spender: Address
    amount: Amount | Literal["unlimited"]


class RevokeArgs(BaseModel):
    """Arguments of ``revoke_approval``."""

    chain_id: ChainId
    token: Address
    spender: Address


def _access(ctx: ToolContext) -> ChainAccess:
    access: ChainAccess = ctx.chain()
    return access


class _Facts:
    """Collects the facts of one consequential action; stops early when the rest would be meaningless."""

    def __init__(self, ctx: ToolContext, requested_chain_id: int) -> None:
        access = _access(ctx)
        self.access, self.chain = access, access.chain
        node_id = self.chain.chain_id()
        spec_id = ctx.chain_id or access.chain_id
        self.data: dict[str, Any] = {
            "chain": {"node_id": node_id, "configured_id": access.chain_id, "spec_id": spec_id,
                      "requested_id": requested_chain_id,
                      "matches": node_id == access.chain_id == spec_id == requested_chain_id},
            "sender": {"address": access.address}, "volatile": {}}
        self.ok = bool(self.data["chain"]["matches"] and access.address)

    def token(self, address: str) -> tuple[str, int] | None:
        """Code and metadata of the token; None (recorded) when it is not a readable ERC-20."""
        facts: dict[str, Any] = {"address": address, "has_code": self.chain.is_contract(address)}
        self.data["token"] = facts
        if not facts["has_code"]:
            self.ok = False
            return None
        try:
            info = self.chain.token_info(address)
        except ChainUnavailableError as exc:
            if "reverted" not in str(exc) and "BadFunctionCallOutput" not in str(exc):
                raise
            facts["error"] = "not an ERC-20 token: " + str(exc)
            self.ok = False
            return None
        facts.update(name=info.name, symbol=info.symbol, decimals=info.decimals)
        return info.symbol, info.decimals

    def amount(self, value: str, decimals: int, *, unlimited: bool = False) -> int | None:
        if unlimited:
            self.data["amount"] = {"value": "unlimited", "units": str(MAX_UINT256), "unlimited": True}
            return MAX_UINT256
        try:
            units = to_units(value, decimals)
        except InputError as exc:
            self.data["amount"] = {"value": value, "error": str(exc)}
            self.ok = False
            return None
        self.data["amount"] = {"value": from_units(units, decimals), "units": str(units), "unlimited": False}
        return units

    def party(self, key: str, address: str) -> None:
        self.data[key] = {"address": address, "is_contract": self.chain.is_contract(address)}

    def transaction(self, tx: dict[str, Any], watch: list[tuple[str, str | None]],
                    symbols: dict[str | None, tuple[str, int]]) -> None:
        """Nonce, gas and fees (volatile), and the simulation with its balance changes."""
        volatile = self.data["volatile"]
        volatile["nonce"] = self.chain.nonce(tx["from"])
        volatile["block"] = self.chain.block_number()
        try:
            volatile["gas_estimate"] = self.chain.estimate_gas(tx)
        except TransactionRevertedError as exc:
            volatile["gas_estimate"] = None
            volatile["gas_error"] = exc.reason
        volatile.update({k: str(v) for k, v in self.chain.fees().items()})
        simulation = self.chain.simulate(tx, watch)
        for change in simulation["balance_changes"]:
            symbol, decimals = symbols[change["asset"]]
            change.update(asset=symbol, before=from_units(change["before"], decimals),
                          after=from_units(change["after"], decimals), delta=_signed(change["delta"], decimals))
        self.data["simulation"] = simulation


def _signed(units: int, decimals: int) -> str:
    return ("-" if units < 0 else "+" if units > 0 else "") + from_units(abs(units), decimals)


NATIVE = ("ETH", 18)


def native_transfer_facts(args: NativeTransferArgs, ctx: ToolContext) -> dict[str, Any]:
    """Chain, sender balance, recipient kind and the simulated transfer."""
    f = _Facts(ctx, args.chain_id)
    if f.ok:
        sender = f.data["sender"]["address"]
        f.data["sender"]["native_balance"] = from_units(f.chain.native_balance(sender), 18)
        f.party("recipient", args.to)
        units = f.amount(args.amount, 18)
        if units is not None:
            f.transaction({"from": sender, "to": args.to, "value": units},
                          [(sender, None), (args.to, None)], {None: NATIVE})
    return f.data


def token_transfer_facts(args: TokenTransferArgs, ctx: ToolContext) -> dict[str, Any]:
    """Chain, token code and metadata, balances, recipient kind, today's total and the simulated transfer."""
    f = _Facts(ctx, args.chain_id)
    token = f.token(args.token) if f.ok else None
    if f.ok and token is not None:
        sender = f.data["sender"]["address"]
        symbol, decimals = token
        f.data["sender"]["token_balance"] = from_units(f.chain.token_balance(args.token, sender), decimals)
        f.data["volatile"]["native_balance"] = from_units(f.chain.native_balance(sender), 18)
        f.data["sent_today"] = from_units(f.access.sent_today(args.token), decimals)
        f.party("recipient", args.to)
        units = f.amount(args.amount, decimals)
        if units is not None:
            data = f.chain.erc20_data("transfer", args.to, units)
            f.transaction({"from": sender, "to": args.token, "data": data},
                          [(sender, args.token), (args.to, args.token)], {args.token: token})
    return f.data


def _allowance_facts(f: _Facts, token_address: str, spender: str, amount: str, unlimited: bool) -> dict[str, Any]:
    token = f.token(token_address) if f.ok else None
    if f.ok and token is not None:
        sender = f.data["sender"]["address"]
        symbol, decimals = token
        f.party("spender", spender)
        current = f.chain.allowance(token_address, sender, spender)
        f.data["allowance"] = {"current": "unlimited" if current == MAX_UINT256 else from_units(current, decimals)}
        units = f.amount(amount, decimals, unlimited=unlimited)
        if units is not None:
            data = f.chain.erc20_data("approve", spender, units)
            f.transaction({"from": sender, "to": token_address, "data": data}, [], {})
    return f.data


def approve_facts(args: ApproveArgs, ctx: ToolContext) -> dict[str, Any]:
    """Chain, token, spender kind, the current allowance and the simulated approval."""
    return _allowance_facts(_Facts(ctx, args.chain_id), args.token, args.spender, args.amount,
                            args.amount == "unlimited")


def revoke_facts(args: RevokeArgs, ctx: ToolContext) -> dict[str, Any]:
    """Chain, token, spender kind, the current allowance and the simulated revocation."""
    return _allowance_facts(_Facts(ctx, args.chain_id), args.token, args.spender, "0", False)


def _send(ctx: ToolContext, chain_id: int, tx: dict[str, Any], *, asset: str | None, units: int | None,
          action: dict[str, Any]) -> dict[str, Any]:
    access = _access(ctx)
    node_id = access.chain.chain_id()
    expected = ctx.chain_id or access.chain_id
    if not chain_id == expected == access.chain_id == node_id:
        raise ToolExecutionError(f"chain id mismatch: the action is for {chain_id}, the workflow for {expected}, "
                                 f"the worker for {access.chain_id}, the node is {node_id}; nothing was sent")
    sent = access.sender().send_once(ctx.idempotency_key, tx, action=action, asset=asset, amount_units=units)
    return {"tx_hash": sent.tx_hash, "status": sent.status, "block": sent.block_number, "nonce": sent.nonce,
            "gas_used": sent.gas_used, "from": access.address, **action, **({"note": sent.note} if sent.note else {})}


def treasury_account(args: Any, ctx: ToolContext) -> str:
    """What a chain action touches: the sending account on its chain (actions on it run one at a time)."""
    return f"chain:{args.chain_id}:{_access(ctx).address}"


@tool(consequential=True, facts=native_transfer_facts, serialize=treasury_account)
def transfer_native(args: NativeTransferArgs, ctx: ToolContext) -> dict[str, Any]:
    """Send the chain's native coin from the treasury account."""
    units = to_units(args.amount, 18)
    return _send(ctx, args.chain_id, {"to": args.to, "value": units}, asset=None, units=units,
                 action={"kind": "native_transfer", "to": args.to, "amount": args.amount, "asset": "ETH",
                         "memo": args.memo})


@tool(consequential=True, facts=token_transfer_facts, serialize=treasury_account)
def transfer_token(args: TokenTransferArgs, ctx: ToolContext) -> dict[str, Any]:
    """Send an ERC-20 token from the treasury account to a payee."""
    chain: Chain = _access(ctx).chain
    info = chain.token_info(args.token)
    units = to_units(args.amount, info.decimals)
    return _send(ctx, args.chain_id, {"to": args.token, "data": chain.erc20_data("transfer", args.to, units)},
                 asset=args.token, units=units,
                 action={"kind": "token_transfer", "to": args.to, "amount": from_units(units, info.decimals),
                         "asset": info.symbol, "token": args.token, "memo": args.memo})


def _approve(ctx: ToolContext, chain_id: int, token: str, spender: str, amount: str) -> dict[str, Any]:
    chain: Chain = _access(ctx).chain
    info = chain.token_info(token)
    units = MAX_UINT256 if amount == "unlimited" else to_units(amount, info.decimals)
    return _send(ctx, chain_id, {"to": token, "data": chain.erc20_data("approve", spender, units)},
                 asset=None, units=None,
                 action={"kind": "token_approval", "spender": spender, "token": token, "asset": info.symbol,
                         "amount": amount if amount == "unlimited" else from_units(units, info.decimals)})


@tool(consequential=True, facts=approve_facts, serialize=treasury_account)
def approve_token(args: ApproveArgs, ctx: ToolContext) -> dict[str, Any]:
    """Allow a spender (a contract) to move up to an amount of a token from the treasury."""
    return _approve(ctx, args.chain_id, args.token, args.spender, args.amount)


@tool(consequential=True, facts=revoke_facts, serialize=treasury_account)
def revoke_approval(args: RevokeArgs, ctx: ToolContext) -> dict[str, Any]:
    """Set a spender's allowance on a token back to zero."""
    return _approve(ctx, args.chain_id, args.token, args.spender, "0")

