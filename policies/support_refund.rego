# Refund policy for the support-refund workflow.
# Up to 50 automatically, up to 500 with one approval by support-leads,
# never above 500, never more than is left on the order, never to an order
# of another customer; an amount that only a ticket's or a web page's text
# gave needs approval. Emails: to the customer's address on file or a
# colleague at the shop's own domain; to an address only a third party's text
# gave, never; to anyone else the user named, with approval. Anything not
# covered is denied.
package airlock.support_refund

import rego.v1

import data.airlock.envelope
import data.airlock.lib.provenance

_reads := {"lookup_order", "read_ticket", "fetch_page"}

_tools := _reads | {"issue_refund", "send_email"}

# What a run reads from the shop's private records (orders, tickets): it may go to the customer or the shop.
_private := {"lookup_order", "read_ticket"}

_auto_limit := 50

_approval_limit := 500

# METADATA
# description: The decision for one proposed tool call (its input contract is in the README under The boundary and the policy contract).
# entrypoint: true
decision := envelope.decision(deny, approval, allowed, ["support-leads"])

_refund if input.tool.name == "issue_refund"

_amount := to_number(input.tool.args.amount)

_same_customer if input.facts.order.customer_id == input.run.input.customer_id

deny contains sprintf("tool %s is not allowed in this workflow", [input.tool.name]) if {
	not input.tool.name in _tools
}

deny contains sprintf("order %s does not exist", [input.tool.args.order_id]) if {
	_refund
	not input.facts.order.exists
}

deny contains sprintf("order %s belongs to another customer", [input.tool.args.order_id]) if {
	_refund
	input.facts.order.exists
	not _same_customer
}

deny contains "refund amount is missing or not a number" if {
	_refund
	not _amount
}

deny contains sprintf("refunds above %d are not allowed (asked %v)", [_approval_limit, input.tool.args.amount]) if {
	_refund
	_amount > _approval_limit
}

deny contains sprintf("refund of %v exceeds the %v left on order %s", [
	input.tool.args.amount,
	input.facts.order.refundable,
	input.tool.args.order_id,
]) if {
	_refund
	_amount > to_number(input.facts.order.refundable)
}

approval contains sprintf("refunds above %d need one approval by support-leads", [_auto_limit]) if {
	_refund
	_amount > _auto_limit
}

# Where the amount came from (input.provenance): a figure that only a ticket's or a page's text gave is the
# writer's claim, not the shop's; a person looks before it is paid.
approval contains sprintf("the amount %v comes only from untrusted content: %s", [
	input.tool.args.amount,
	provenance.where("amount"),
]) if {
	_refund
	provenance.untrusted_only("amount")
}

allowed contains "read-only lookup" if input.tool.name in _reads

allowed contains sprintf("refund of %v is within the automatic limit of %d", [input.tool.args.amount, _auto_limit]) if {
	_refund
	_amount <= _auto_limit
}

# --- emails ----------------------------------------------------------------------------

_email if input.tool.name == "send_email"

_to := lower(input.tool.args.to)

_to_customer if _to == lower(input.facts.customer.email)

_to_colleague if endswith(_to, concat("", ["@", lower(input.facts.own_domain)]))

# Addresses the shop vouches for whatever text the model read them in.
_vouched := {input.tool.args.to | _to_customer} | {input.tool.args.to | _to_colleague}

_read_private if {
	some call in input.run.previous
	call.outcome == "executed"
	call.tool in _private
}

deny contains reason if {
	_email
	not _read_private
	some reason in provenance.untrusted_destinations({"to"}, _vouched)
}

deny contains reason if {
	_email
	some reason in provenance.exfiltration({"to"}, _private, _vouched)
}

approval contains sprintf("%v is neither the customer's address on file nor at %v: one approval by support-leads", [
	input.tool.args.to,
	input.facts.own_domain,
]) if {
	_email
	not _to_customer
	not _to_colleague
}

allowed contains "email to the customer's address on file" if {
	_email
	_to_customer
}

allowed contains sprintf("email to a colleague at %v", [input.facts.own_domain]) if {
	_email
	_to_colleague
}
