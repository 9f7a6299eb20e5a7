# Treasury payout policy for the treasury-payout workflow.
#
# Reads are allowed. A payment in an allowlisted token to a listed payee is
# allowed up to the token's automatic limit, needs one approval by
# treasury-approvers up to its approval limit, and is denied above it or when
# the day's total for the token would pass its daily limit. Everything the
# chain facts contradict is denied: wrong chain, a token that is not the
# allowlisted contract, a recipient that is a contract not on the list, an
# insufficient balance, a simulation that reverts. Allowances: never
# unlimited, only to listed contracts, always with approval; revoking is
# allowed. Anything not covered, or any fact that is missing, is denied.
package airlock.treasury_payout

import rego.v1

import data.airlock.envelope
import data.airlock.lib.provenance

_cfg := data.airlock.treasury

_reads := {"read_invoice", "get_balance", "get_allowance", "token_metadata", "transaction_status"}

_payments := {"transfer_token", "transfer_native"}

_allowances := {"approve_token", "revoke_approval"}

# METADATA
# description: The decision for one proposed tool call (its input contract is in the README under The boundary and the policy contract).
# entrypoint: true
decision := envelope.decision(deny, approval, allowed, ["treasury-approvers"])

_tool := input.tool.name

_args := input.tool.args

_facts := input.facts

_consequential if _tool in (_payments | _allowances)

_token_rules := _cfg.tokens[_args.token]

_native_rules := _cfg.native

_rules := _token_rules if _args.token

_rules := _native_rules if _tool == "transfer_native"

_amount := to_number(_facts.amount.value)

deny contains sprintf("tool %s is not allowed in this workflow", [_tool]) if {
	not _tool in ((_reads | _payments) | _allowances)
}

# --- facts every consequential action needs -------------------------------------------

deny contains sprintf("chain mismatch: the action is for chain %v, the policy's chain is %v", [
	_args.chain_id,
	_cfg.chain_id,
]) if {
	_consequential
	_args.chain_id != _cfg.chain_id
}

deny contains sprintf("chain mismatch: the node is chain %v, the worker is configured for %v", [
	_facts.chain.node_id,
	_facts.chain.configured_id,
]) if {
	_consequential
	_facts.chain.node_id != _facts.chain.configured_id
}

deny contains "the chain facts are missing or do not match" if {
	_consequential
	not _facts.chain.matches
}

deny contains "no signing account is configured" if {
	_consequential
	not _facts.sender.address
}

deny contains sprintf("token %v is not on the allowlist", [_args.token]) if {
	_consequential
	_args.token
	not _token_rules
}

deny contains sprintf("no contract is deployed at token address %v", [_args.token]) if {
	_consequential
	_token_rules
	_facts.token.has_code == false
}

deny contains sprintf("the contract at %v says it is %v, the allowlist expects %v", [
	_args.token,
	_facts.token.symbol,
	_token_rules.symbol,
]) if {
	_consequential
	_token_rules
	_facts.token.symbol
	_facts.token.symbol != _token_rules.symbol
}

deny contains sprintf("the amount cannot be used: %v", [_facts.amount.error]) if {
	_consequential
	_facts.amount.error
}

deny contains "the transaction was not simulated" if {
	_consequential
	_facts.chain.matches
	not _facts.simulation
}

deny contains sprintf("the simulation reverts: %v", [_facts.simulation.revert_reason]) if {
	_consequential
	_facts.simulation.ok == false
}

# --- payments --------------------------------------------------------------------------

deny contains sprintf("recipient %v is not on the payee list", [_args.to]) if {
	_tool in _payments
	not _cfg.payees[_args.to]
}

# Where the arguments came from (input.provenance): a recipient, or an amount, that only a third party's text
# gave (an instruction hidden in an invoice's note) is not the company's decision. A recipient on the payee
# list is vouched for wherever the model read it.
_payees := {address | some address, _ in _cfg.payees}

deny contains sprintf("recipient %v comes only from untrusted content: %s", [_args.to, provenance.where("to")]) if {
	_tool in _payments
	provenance.untrusted_only("to")
	not provenance.vouched("to", _payees)
}

approval contains reason if {
	_tool in _payments
	some reason in provenance.suspect_amounts({"amount"}, {"read_invoice"})
}

# A listed payee that only a third party's text named for this payment ("this receivable was assigned to Acme",
# written in Globex's invoice) is vouched for as a payee, not as the payee of this invoice: it is, when an invoice
# the run read is that payee's own (the AP ledger's vendor).
# The payment is against this payee's own invoice when the AP ledger names the payee as the vendor of an invoice
# the run read, and the amount is that invoice's amount due or one the user typed.
_own_invoice if {
	some call in input.run.previous
	call.outcome == "executed"
	call.tool == "read_invoice"
	call.result.vendor == _cfg.payees[_args.to]
	_amount_for(call.result)
}

_amount_for(invoice) if to_number(replace(invoice.amount_due, ",", "")) == to_number(_args.amount)

_amount_for(_) if {
	some source in provenance.entry("amount").sources
	source.from == "user"
}

# Named only by a third party: found only in untrusted content, not traced at all, or made up (pieced together)
# after the run read an invoice.
_to_from_third_party if provenance.untrusted_only("to")

_to_from_third_party if not provenance.entry("to")

_to_from_third_party if {
	provenance.nowhere("to")
	provenance.read_any({"read_invoice"})
}

approval contains sprintf("recipient %v (%v) is a listed payee, but only untrusted content named it for this payment: %s", [
	_args.to,
	_cfg.payees[_args.to],
	provenance.where("to"),
]) if {
	_tool in _payments
	_to_from_third_party
	_cfg.payees[_args.to]
	not _own_invoice
}

# The same payment twice in one run (an invoice "bounced", a second invoice number for the same bill).
approval contains sprintf("this run already paid %v to %v (%v): a person checks it is not paid twice", [
	_args.amount,
	_args.to,
	call.call_id,
]) if {
	_tool in _payments
	some call in input.run.previous
	call.outcome == "executed"
	call.tool == _tool
	lower(call.args.to) == lower(_args.to)
	to_number(call.args.amount) == to_number(_args.amount)
}

deny contains sprintf("recipient %v is a contract that is not allowlisted", [_args.to]) if {
	_tool in _payments
	_facts.recipient.is_contract
	not _cfg.contracts[_args.to]
}

deny contains sprintf("insufficient balance: %v %v held, %v asked", [
	_facts.sender.token_balance,
	_facts.token.symbol,
	_args.amount,
]) if {
	_tool == "transfer_token"
	to_number(_facts.sender.token_balance) < _amount
}

deny contains "a payment must move a positive amount" if {
	_tool in _payments
	_amount <= 0
}

deny contains sprintf("payments above %v %v are not allowed (asked %v)", [
	_rules.approval_limit,
	_rules.symbol,
	_args.amount,
]) if {
	_tool in _payments
	_amount > _rules.approval_limit
}

deny contains sprintf("today's total of %v would pass the daily limit of %v (already sent %v)", [
	_rules.symbol,
	_rules.daily_limit,
	_facts.sent_today,
]) if {
	_tool == "transfer_token"
	to_number(_facts.sent_today) + _amount > _rules.daily_limit
}

approval contains sprintf("payments above %v %v need one approval by treasury-approvers", [
	_rules.auto_limit,
	_rules.symbol,
]) if {
	_tool in _payments
	_amount > _rules.auto_limit
}

allowed contains sprintf("payment of %v %v to %v, within the automatic limit of %v", [
	_args.amount,
	_rules.symbol,
	_cfg.payees[_args.to],
	_rules.auto_limit,
]) if {
	_tool in _payments
	_amount <= _rules.auto_limit
}

# --- allowances ------------------------------------------------------------------------

deny contains "unlimited approvals are not allowed" if {
	_tool == "approve_token"
	_facts.amount.unlimited
}

deny contains sprintf("spender %v is not an allowlisted contract", [_args.spender]) if {
	_tool == "approve_token"
	not _cfg.contracts[_args.spender]
}

deny contains sprintf("approvals above %v %v are not allowed", [_rules.max_allowance, _rules.symbol]) if {
	_tool == "approve_token"
	not _facts.amount.unlimited
	_amount > _rules.max_allowance
}

approval contains "every allowance needs one approval by treasury-approvers" if _tool == "approve_token"

allowed contains "revoking an allowance only lowers risk" if _tool == "revoke_approval"

allowed contains "read-only chain query" if _tool in _reads
