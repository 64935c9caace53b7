# Package guestgate.secure_anonymous decides what a secure anonymous token
# (SAT) may do: its role and scope bound what it reaches, and nothing outside
# that scope.
#
# Every check below negates a rule or a comparison ("not launchpad"), so a
# claim or a path segment that is missing denies rather than allows.
# A claim of an unexpected type denies as one that is missing: a role that is
# not the string compared fails the comparison, and a scope that is not a
# string fails split (scope_invalid). Path segments are strings: authz.rego
# refuses any other path before it asks here.
package guestgate.secure_anonymous

# reason is "allowed", or the first thing this request gets wrong.
#
# Only "launchpad_user" is let through. An "administrator" acts through the API
# credentials of its integration; an anonymous token carrying that role would
# put an administrator's reach in a browser, and no route here is scoped for it.
reason := "role_not_allowed" if {
	not input.token.claims.role == "launchpad_user"
} else := "scope_invalid" if {
	not launchpad
} else := "scope_mismatch" if {
	not within_launchpad
} else := "allowed"

# The launchpad a token opens: its scope is exactly "launchpads/<id>".
launchpad := id if {
	["launchpads", id] = split(input.token.claims.scope, "/")
	not id in {"", ".", ".."}
}

# The token reaches /v1/launchpads/<id> and everything below it. (Segments
# are read by position: cheaper than matching a slice of the path.)
within_launchpad if {
	input.parsed_path[0] == "v1"
	input.parsed_path[1] == "launchpads"
	input.parsed_path[2] == launchpad
}
