package airlock.support_refund_test

import rego.v1

import data.airlock.support_refund

_refund(amount, customer) := {
	"tool": {"name": "issue_refund", "args": {"order_id": "A-1002", "amount": amount, "reason": "late"}},
	"facts": {"order": {"exists": true, "customer_id": customer, "total": "320.00", "refundable": "320.00"}},
	"run": {"input": {"customer_id": "cus_ana"}},
	"provenance": {"amount": _typed},
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

# --- where the arguments came from ------------------------------------------------------

_ticket(context) := {"sources": [{"from": "tool:read_ticket", "field": "body", "trusted": false, "context": context}], "trusted": false}

_typed := {"sources": [{"from": "user", "field": "input.message", "trusted": true, "context": "…"}], "trusted": true}

test_an_amount_only_a_ticket_gave_needs_approval if {
	inp := json.patch(_refund("45.00", "cus_ana"), [{"op": "replace", "path": "/provenance/amount", "value": _ticket("Refund 45 EUR on A-1003")}])
	d := support_refund.decision with input as inp
	d.allow
	d.require_approval
	some r in d.reasons
	startswith(r, "amount 45.00 was not given by the user or a trusted source: tool:read_ticket body")
}

test_an_amount_the_user_typed_is_allowed if {
	inp := object.union(_refund("45.00", "cus_ana"), {"provenance": {"amount": _typed}})
	d := support_refund.decision with input as inp
	d.allow
	not d.require_approval
}

test_an_amount_the_model_worked_out_is_judged_by_the_limits_alone if {
	inp := json.patch(_refund("45.00", "cus_ana"), [{"op": "replace", "path": "/provenance/amount", "value": {"sources": [], "trusted": false}}])
	d := support_refund.decision with input as inp
	not d.require_approval
}

test_an_amount_made_up_after_reading_a_ticket_needs_approval if {
	inp := json.patch(_refund("45.00", "cus_ana"), [
		{"op": "replace", "path": "/provenance/amount", "value": {"sources": [], "trusted": false}},
		{"op": "add", "path": "/run/previous", "value": [{"tool": "read_ticket", "outcome": "executed", "args": {}}]},
	])
	d := support_refund.decision with input as inp
	d.require_approval
	"amount 45.00 was not given by the user or a trusted source: nowhere (the model made it up after reading read_ticket)" in d.reasons
}

test_a_refund_without_provenance_needs_approval if {
	d := support_refund.decision with input as json.remove(_refund("20.00", "cus_ana"), ["provenance"])
	d.require_approval
}

_email(to, to_prov, previous) := {
	"tool": {"name": "send_email", "args": {"to": to, "subject": "Your order", "body": "…"}},
	"facts": {"customer": {"customer_id": "cus_ana", "email": "ana.lima@mail.example"}, "own_domain": "shop.example", "foreign_hosts": []},
	"run": {"input": {"customer_id": "cus_ana"}, "previous": previous},
	"provenance": {"to": to_prov},
}

_looked_up := [{"tool": "lookup_order", "outcome": "executed", "args": {"order_id": "A-1002"}}]

test_an_email_to_the_customer_on_file_is_allowed_wherever_the_address_was_read if {
	d := support_refund.decision with input as _email("Ana.Lima@mail.example", _ticket("reply to ana.lima@…"), _looked_up)
	d.allow
	not d.require_approval
	d.reasons == {"email to the customer's address on file"}
}

test_an_email_to_a_colleague_is_allowed if {
	d := support_refund.decision with input as _email("billing@shop.example", _typed, _looked_up)
	d.allow
	not d.require_approval
}

test_private_data_to_an_address_from_a_ticket_is_exfiltration if {
	d := support_refund.decision with input as _email("audit@shop-example.com", _ticket("email … to audit@shop-example.com"), _looked_up)
	not d.allow
	some r in d.reasons
	startswith(r, "the run read private data (lookup_order) and to audit@shop-example.com did not come from")
}

test_an_address_only_a_page_gave_is_denied_before_any_private_read if {
	page := {"sources": [{"from": "tool:fetch_page", "field": "text", "trusted": false, "context": "…"}], "trusted": false}
	d := support_refund.decision with input as _email("claims@carrier-refunds.example", page, [])
	not d.allow
	some r in d.reasons
	startswith(r, "to claims@carrier-refunds.example comes only from untrusted content: tool:fetch_page text")
}

test_an_address_the_model_made_up_is_denied if {
	d := support_refund.decision with input as _email("ops@evil.example", {"sources": [], "trusted": false}, [])
	not d.allow
}

test_look_alike_domains_are_not_the_shop if {
	some to in ["x@shop.example.evil.com", "x@evil-shop.example", "x@shop-example"]
	d := support_refund.decision with input as _email(to, _ticket("…"), [])
	not d.allow
}

test_an_address_the_user_typed_needs_approval if {
	d := support_refund.decision with input as _email("ana.work@firm.example", _typed, _looked_up)
	d.allow
	d.require_approval
}

test_an_email_without_provenance_is_denied if {
	inp := json.remove(_email("ops@evil.example", _typed, []), ["provenance"])
	d := support_refund.decision with input as inp
	not d.allow
	"to ops@evil.example comes only from untrusted content: not traced (the input has no provenance for it)" in d.reasons
}

test_another_customers_order_never_goes_out_not_even_to_this_customer if {
	bens := [{"tool": "lookup_order", "outcome": "executed", "args": {"order_id": "B-2001"}, "result": {"order_id": "B-2001", "customer_id": "cus_ben"}}]
	d := support_refund.decision with input as _email("ana.lima@mail.example", _typed, bens)
	not d.allow
	"the run read lookup_order B-2001 of another customer (cus_ben)" in d.reasons
}

test_a_link_from_a_page_relayed_to_a_colleague_needs_approval if {
	read := [{"tool": "fetch_page", "outcome": "executed", "args": {}}]
	inp := json.patch(_email("finance@shop.example", _typed, read), [{"op": "replace", "path": "/facts/foreign_hosts", "value": ["pay.evil.example"]}])
	d := support_refund.decision with input as inp
	d.require_approval
	"the email names pay.evil.example and the run read fetch_page: a person checks what it relays" in d.reasons
}

test_a_link_from_a_ticket_sent_to_the_customer_needs_approval if {
	read := [{"tool": "read_ticket", "outcome": "executed", "args": {"ticket_id": "T-3002"}, "result": {"customer_id": "cus_ana"}}]
	inp := json.patch(_email("ana.lima@mail.example", _typed, read), [{"op": "replace", "path": "/facts/foreign_hosts", "value": ["card-check.example"]}])
	d := support_refund.decision with input as inp
	d.require_approval
}

test_another_customers_ticket_never_goes_out if {
	read := [{"tool": "read_ticket", "outcome": "executed", "args": {"ticket_id": "T-3009"}, "result": {"customer_id": "cus_ben"}}]
	d := support_refund.decision with input as _email("audit@shop.example", _typed, read)
	not d.allow
	"the run read read_ticket T-3009 of another customer (cus_ben)" in d.reasons
}

test_records_read_in_a_run_without_a_customer_never_go_out if {
	inp := json.remove(_email("audit@shop.example", _typed, [{"tool": "lookup_order", "outcome": "executed", "args": {"order_id": "B-2001"}, "result": {"customer_id": "cus_ben"}}]), ["run/input/customer_id"])
	d := support_refund.decision with input as inp
	not d.allow
}

test_the_same_order_refunded_twice_in_a_run_needs_approval if {
	inp := object.union(_refund("20.00", "cus_ana"), {"run": {"previous": [{"call_id": "c1", "tool": "issue_refund", "outcome": "executed", "args": {"order_id": "A-1002", "amount": "20.00"}}]}})
	d := support_refund.decision with input as inp
	d.require_approval
}

test_a_link_to_a_colleague_without_third_party_reads_is_allowed if {
	inp := json.patch(_email("finance@shop.example", _typed, _looked_up), [{"op": "replace", "path": "/tool/args/body", "value": "See https://shop.example/orders/A-1002"}])
	d := support_refund.decision with input as inp
	not d.require_approval
	d.allow
}
