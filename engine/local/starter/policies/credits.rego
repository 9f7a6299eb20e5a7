# Credit policy for the grant-credit workflow: up to 20 automatically, up to
# 200 with one approval by ops, never above 200, never more than 300 to one
# customer in 30 days, only to the customer the run is about. Anything not
# covered is denied. Input and decision: docs/policies.md of Airlock.
package credits

import rego.v1

_auto_limit := 20

_approval_limit := 200

_cap_30d := 300

# METADATA
# description: The decision for one proposed tool call.
# entrypoint: true
decision := {
	"allow": count(deny) == 0,
	"require_approval": _needs_approval,
	"approvers": ["ops"],
	"min_approvals": 1,
	"reasons": _reasons,
}

_amount := to_number(input.tool.args.amount)

deny contains sprintf("tool %s is not allowed in this workflow", [input.tool.name]) if {
	input.tool.name != "grant_credit"
}

deny contains sprintf("customer %s does not exist", [input.tool.args.customer_id]) if {
	not input.facts.customer.exists
}

deny contains "credit only goes to the customer the run is about" if {
	input.tool.args.customer_id != input.run.input.customer_id
}

deny contains "the facts do not say what was granted in 30 days" if {
	not to_number(input.facts.granted_30d)
}

deny contains "amount is missing or not a number" if {
	not _amount
}

deny contains sprintf("credits above %d are not allowed (asked %v)", [_approval_limit, input.tool.args.amount]) if {
	_amount > _approval_limit
}

deny contains sprintf("at most %d per customer in 30 days (%v granted, %v asked)", [
	_cap_30d, input.facts.granted_30d, input.tool.args.amount,
]) if {
	to_number(input.facts.granted_30d) + _amount > _cap_30d
}

approval contains sprintf("credits above %d need one approval by ops", [_auto_limit]) if {
	_amount > _auto_limit
}

default _needs_approval := false

_needs_approval if {
	count(deny) == 0
	count(approval) > 0
}

_reasons := deny if {
	count(deny) > 0
} else := approval if {
	count(approval) > 0
} else := {sprintf("within the automatic limit of %d", [_auto_limit])}
