package airlock.envelope_test

import rego.v1

import data.airlock.envelope

test_decision_a_denial_wins if {
	d := envelope.decision({"too much"}, {"big"}, {"fine"}, ["leads"])
	d == {"allow": false, "require_approval": false, "approvers": ["leads"], "min_approvals": 1, "reasons": {"too much"}}
}

test_decision_approval_reasons_ask_for_one_approval if {
	d := envelope.decision(set(), {"big"}, {"fine"}, ["leads"])
	d == {"allow": true, "require_approval": true, "approvers": ["leads"], "min_approvals": 1, "reasons": {"big"}}
}

test_decision_allowed_reasons_allow if {
	d := envelope.decision(set(), set(), {"fine"}, ["leads"])
	d == {"allow": true, "require_approval": false, "approvers": ["leads"], "min_approvals": 1, "reasons": {"fine"}}
}
