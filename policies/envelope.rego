# The decision every workflow policy returns, built from its reasons.
#
# A policy collects `deny`, `approval` and `allowed` reasons (sets of strings)
# and returns `envelope.decision(deny, approval, allowed, approvers)`: any
# denial denies (with the denials as reasons); otherwise any approval reason
# asks `approvers` for one approval (with those reasons); otherwise it allows.
package airlock.envelope

import rego.v1

# METADATA
# description: The decision object of the policy contract (README, The boundary and the policy contract).
decision(deny, approval, allowed, approvers) := {
	"allow": count(deny) == 0,
	"require_approval": _needs_approval(deny, approval),
	"approvers": approvers,
	"min_approvals": 1,
	"reasons": _reasons(deny, approval, allowed),
}

_needs_approval(deny, approval) if {
	count(deny) == 0
	count(approval) > 0
} else := false

_reasons(deny, approval, allowed) := deny if {
	count(deny) > 0
} else := approval if {
	count(approval) > 0
} else := allowed
