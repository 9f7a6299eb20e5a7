package airlock.support_refund_test

import rego.v1

import data.airlock.support_refund

_refund(amount, customer) := {
	"tool": {"name": "issue_refund", "args": {"order_id": "A-1002", "amount": amount, "reason": "late"}},
	"facts": {"order": {"exists": true, "customer_id": customer, "total": "320.00", "refundable": "320.00"}},
	"run": {"input": {"customer_id": "cus_ana"}},
}

test_decision_small_refund_allowed if {
	d := support_refund.decision with input as _refund("25.00", "cus_ana")
	d.allow
	not d.require_approval
}

test_decision_boundary_50_allowed if {
	d := support_refund.decision with input as _refund("50.00", "cus_ana")
	d.allow
	not d.require_approval
}

test_decision_medium_refund_needs_approval if {
	d := support_refund.decision with input as _refund("50.01", "cus_ana")
	d.require_approval
	d.approvers == ["support-leads"]
	d.min_approvals == 1
}

test_decision_boundary_500_needs_approval if {
	inp := json.patch(_refund("500.00", "cus_ana"), [{"op": "replace", "path": "/facts/order/refundable", "value": "900.00"}])
	d := support_refund.decision with input as inp
	d.require_approval
}

test_decision_large_refund_denied if {
	inp := json.patch(_refund("500.01", "cus_ana"), [{"op": "replace", "path": "/facts/order/refundable", "value": "900.00"}])
	d := support_refund.decision with input as inp
	not d.allow
	not d.require_approval
	"refunds above 500 are not allowed (asked 500.01)" in d.reasons
}

test_decision_other_customer_denied if {
	d := support_refund.decision with input as _refund("10.00", "cus_ben")
	not d.allow
	not d.require_approval
	"order A-1002 belongs to another customer" in d.reasons
}

test_decision_missing_customer_denied if {
	inp := json.remove(_refund("10.00", "cus_ana"), ["run/input/customer_id"])
	d := support_refund.decision with input as inp
	not d.allow
}

test_decision_missing_order_denied if {
	inp := json.patch(_refund("10.00", "cus_ana"), [{"op": "replace", "path": "/facts/order", "value": {"exists": false}}])
	d := support_refund.decision with input as inp
	not d.allow
	"order A-1002 does not exist" in d.reasons
}

test_decision_more_than_refundable_denied if {
	inp := json.patch(_refund("40.00", "cus_ana"), [{"op": "replace", "path": "/facts/order/refundable", "value": "30.00"}])
	d := support_refund.decision with input as inp
	not d.allow
}

test_decision_non_numeric_amount_denied if {
	d := support_refund.decision with input as _refund("lots", "cus_ana")
	not d.allow
	not d.require_approval
}

test_decision_lookup_allowed if {
	d := support_refund.decision with input as {"tool": {"name": "lookup_order", "args": {"order_id": "A-1001"}}}
	d.allow
	d.reasons == {"read-only lookup"}
}

test_decision_unknown_tool_denied if {
	d := support_refund.decision with input as {"tool": {"name": "wire_money", "args": {}}}
	not d.allow
}
