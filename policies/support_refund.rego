# Refund policy for the support-refund workflow.
# Up to 50 automatically, up to 500 with one approval by support-leads,
# never above 500, never more than is left on the order, never to an order
# of another customer. Anything not covered is denied.
package airlock.support_refund

import rego.v1

import data.airlock.envelope

_tools := {"lookup_order", "issue_refund"}

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

allowed contains "read-only lookup" if input.tool.name == "lookup_order"

allowed contains sprintf("refund of %v is within the automatic limit of %d", [input.tool.args.amount, _auto_limit]) if {
	_refund
	_amount <= _auto_limit
}
