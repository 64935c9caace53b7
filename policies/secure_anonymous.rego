# Package guestgate.secure_anonymous decides what a secure anonymous token
# (SAT) may do: its role and scope bound what it reaches, and nothing outside
# that scope.
#
# A request is let through only by the first line of reason, whose checks
# must all hold: a claim or a path segment that is missing makes it fail.
# Every line after it that names a reason negates a rule or a comparison
# ("not launchpad"), so that what is missing is named too.
package guestgate.secure_anonymous

# reason is "allowed", or the first thing this request gets wrong.
#
# Only "launchpad_user" is let through. An "administrator" acts through the API
# credentials of its integration; an anonymous token carrying that role would
# put an administrator's reach in a browser, and no route here is scoped for it.
#
# The first line lets through what passes every check; the lines after it
# only name the check that failed, in order. (So a request that passes
# evaluates each check once, not once more negated: a check added here must
# be added to the first line, and its test, which expects its reason, fails
# until it is.)
reason := "allowed" if {
	input.token.claims.role == "launchpad_user"
	within_launchpad
} else := "role_not_allowed" if {
	not input.token.claims.role == "launchpad_user"
} else := "scope_invalid" if {
	not launchpad
} else := "scope_mismatch"

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
