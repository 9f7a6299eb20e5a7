package credits_test

import rego.v1

import data.credits

_call(amount) := {
	"tool": {"name": "grant_credit", "args": {"customer_id": "cus_ana", "amount": amount, "reason": "cold coffee"}},
	"facts": {"customer": {"exists": true}, "granted_30d": "0"},
	"run": {"input": {"customer_id": "cus_ana"}},
}

test_decision_small_credit_allowed if {
	d := credits.decision with input as _call("20.00")
	d.allow
	not d.require_approval
}

test_decision_larger_credit_needs_ops if {
	d := credits.decision with input as _call("20.01")
	d.require_approval
	d.approvers == ["ops"]
}

test_decision_above_approval_limit_denied if {
	d := credits.decision with input as _call("200.01")
	not d.allow
	not d.require_approval
}

test_decision_other_customer_denied if {
	inp := json.patch(_call("5.00"), [{"op": "replace", "path": "/tool/args/customer_id", "value": "cus_ben"}])
	d := credits.decision with input as inp
	not d.allow
	"credit only goes to the customer the run is about" in d.reasons
}

test_decision_unknown_customer_denied if {
	inp := json.patch(_call("5.00"), [{"op": "replace", "path": "/facts/customer/exists", "value": false}])
	d := credits.decision with input as inp
	not d.allow
}

test_decision_30_day_cap_denied if {
	inp := json.patch(_call("50.00"), [{"op": "replace", "path": "/facts/granted_30d", "value": "260.00"}])
	d := credits.decision with input as inp
	not d.allow
}

test_decision_missing_facts_denied if {
	d := credits.decision with input as object.remove(_call("5.00"), ["facts"])
	not d.allow
}

test_decision_other_tool_denied if {
	inp := json.patch(_call("5.00"), [{"op": "replace", "path": "/tool/name", "value": "delete_account"}])
	d := credits.decision with input as inp
	not d.allow
}
