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

# Tools whose results a third party writes.
_third_party := {"read_ticket", "fetch_page"}

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
approval contains reason if {
	_refund
	some reason in provenance.suspect_amounts({"amount"}, _third_party)
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

# Another customer's records (an order, a ticket filed under them) never go out in this customer's run, not even
# to this customer.
deny contains sprintf("the run read %v %v of another customer (%v)", [call.tool, object.get(call.args, _record_key[call.tool], "?"), call.result.customer_id]) if {
	_email
	some call in input.run.previous
	call.outcome == "executed"
	call.tool in _private
	call.result.customer_id != object.get(input.run.input, "customer_id", "")
}

_record_key := {"lookup_order": "order_id", "read_ticket": "ticket_id"}

# A link to anywhere but the shop, in an email written after the run read a third party's text, is how phishing is
# relayed (to a colleague or to the customer): a person checks it. The worker lists the body's hosts however they
# are dressed (no scheme, "hxxps", fullwidth letters, invisible characters).
approval contains sprintf("the email names %v and the run read %v: a person checks what it relays", [
	concat(", ", input.facts.foreign_hosts),
	concat(", ", sort([t | some t in _third_party; provenance.read_any({t})])),
]) if {
	_email
	count(input.facts.foreign_hosts) > 0
	provenance.read_any(_third_party)
}

# The same refund twice in one run.
approval contains sprintf("this run already refunded %v on order %v (%v): a person checks it is not paid twice", [
	call.args.amount,
	call.args.order_id,
	call.call_id,
]) if {
	_refund
	some call in input.run.previous
	call.outcome == "executed"
	call.tool == "issue_refund"
	call.args.order_id == input.tool.args.order_id
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
