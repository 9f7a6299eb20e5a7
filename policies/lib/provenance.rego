# Rules on where a call's arguments came from, for every workflow policy.
#
# The worker puts `input.provenance` beside the arguments: for each argument
# (by path: "to", "payee.iban") the places its value occurs among what the run
# has seen — the user's request ("user"), the workflow's configuration
# ("config"), earlier tool results ("tool:<name>", trusted or not per field),
# a verified person's edit of the call ("person:<name>", trusted) —
# and `trusted`, true when at least one of them is trusted. An argument with
# no sources was made up by the model. A value a policy trusts for other
# reasons (a payee in the address book, a workspace member, the organisation's
# own domain) is "vouched" for: pass those values in as a set.
#
# Each rule returns a set of reasons, to add to a policy's `deny` or
# `approval` set:
#
#   deny contains r if some r in provenance.untrusted_destinations({"to"}, vouched)
#   approval contains r if some r in provenance.untrusted_amounts({"amount"})
#   deny contains r if some r in provenance.exfiltration({"to"}, {"read_file"}, vouched)
package airlock.lib.provenance

import rego.v1

# METADATA
# description: Where an argument's value was found (the entry of input.provenance), or undefined when it is not traced.
entry(path) := input.provenance[path]

# METADATA
# description: The argument at path comes from the user, the configuration or a trusted tool field.
trusted(path) if entry(path).trusted == true

# METADATA
# description: The argument at path occurs nowhere the run has seen - the model made it up.
nowhere(path) if count(entry(path).sources) == 0

# METADATA
# description: The argument at path occurs only in untrusted content (a third party wrote every place it is found).
untrusted_only(path) if {
	count(entry(path).sources) > 0
	not trusted(path)
}

# METADATA
# description: The argument's value is one the policy vouches for itself (compared lower-cased, so checksummed and lower-case addresses match).
vouched(path, vouchers) if {
	value := _arg(path)
	lower(value) in {lower(v) | some v in vouchers}
}

# METADATA
# description: Reasons to deny a destination (recipient, invitee, URL) taken only from untrusted content or made up, unless vouched for.
untrusted_destinations(paths, vouchers) := {reason |
	some path in paths
	_present(path)
	not trusted(path)
	not vouched(path, vouchers)
	reason := _untrusted_reason(path)
}

# METADATA
# description: Reasons to ask a person about an amount that only untrusted content (or nothing at all) gave.
untrusted_amounts(paths) := {reason |
	some path in paths
	_present(path)
	not trusted(path)
	reason := sprintf("%s %v was not given by the user or a trusted source: %s", [path, _arg(path), where(path)])
}

# METADATA
# description: The run executed one of these tools (tools whose results a third party writes - an invoice's note, a ticket, a web page).
read_any(tools) if {
	some call in input.run.previous
	call.outcome == "executed"
	call.tool in tools
}

# METADATA
# description: Reasons to ask a person about an amount that only untrusted text gave, or that the model made up after the run read a third party's text (an instruction can ask for a figure the text never spells out, such as "round it up to nine hundred fifty").
suspect_amounts(paths, third_party_tools) := {reason |
	some path in paths
	_present(path)
	not trusted(path)
	_suspect(path, third_party_tools)
	reason := sprintf("%s %v was not given by the user or a trusted source: %s", [path, _arg(path), _suspect_where(path, third_party_tools)])
}

_suspect(path, _) if untrusted_only(path)

_suspect(path, tools) if {
	nowhere(path)
	read_any(tools)
}

_suspect(path, _) if not entry(path)

_suspect_where(path, tools) := sprintf("nowhere (the model made it up after reading %s)", [concat(", ", sort([t | some t in tools; _read(t)]))]) if {
	nowhere(path)
} else := where(path)

_read(tool) if read_any({tool})

# METADATA
# description: Reasons to deny sending data out when the run read a private source and the destination is not trusted or vouched for.
exfiltration(paths, private_tools, vouchers) := {reason |
	some call in input.run.previous
	call.outcome == "executed"
	call.tool in private_tools
	some path in paths
	_present(path)
	not trusted(path)
	not vouched(path, vouchers)
	reason := sprintf("the run read private data (%s) and %s %v did not come from the user or a trusted source", [
		call.tool, path, _arg(path),
	])
}

# The argument at a provenance path ("to", "payee.iban", "payments[0].to"), false included;
# undefined when the call has no such argument.
_arg(path) := value if {
	value := object.get(input.tool.args, _segments(path), _absent)
	value != _absent
}

_present(path) if _arg(path) != _absent

_absent := "\u0000absent"

_segments(path) := [_segment(part) | some part in split(replace(path, "[", ".["), "."); part != ""]

_segment(part) := to_number(trim_suffix(trim_prefix(part, "["), "]")) if regex.match(`^\[[0-9]+\]$`, part)

_segment(part) := part if not regex.match(`^\[[0-9]+\]$`, part)

_untrusted_reason(path) := sprintf("%s %v appears nowhere the user, the configuration or a trusted source gave (the model made it up)", [path, _arg(path)]) if {
	nowhere(path)
} else := sprintf("%s %v comes only from untrusted content: %s", [path, _arg(path), where(path)])

# METADATA
# description: Where the argument at path was found, as one line for a reason (each source with the text around it).
where(path) := "nowhere (the model made it up)" if {
	nowhere(path)
} else := "not traced (the input has no provenance for it)" if {
	not entry(path)
} else := concat("; ", [sprintf("%s %s: \"%s\"", [s.from, s.field, s.context]) | some s in entry(path).sources])
