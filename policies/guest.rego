# Package guestgate.guest decides what a partner's guests may do. A raw guest
# token (kind "guest") is only ever exchanged for an access token; the access
# token (kind "access") reaches messaging, calling and people within its
# scopes, and never another guest.
#
# Every check below negates a rule ("not scope_granted"), so a claim, a path
# segment or a body that is missing denies rather than allows. (Negating a call
# instead, as in "not x in list", is undefined, not true, when x is missing.)
# "allowed" is the last line of each chain: a check added before it applies.
package guestgate.guest

# A guest token reaches the login exchange and nothing else: whatever else it
# asks for, it must first trade itself for an access token.
guest_token_reason := "allowed" if {
	input.parsed_path == ["v1", "jwt", "login"]
	input.attributes.request.http.method == "POST"
} else := "guest_token_login_only"

# access_token_reason is "allowed", or the first thing this request gets wrong.
access_token_reason := "route_not_allowed" if {
	not route
} else := "method_not_allowed" if {
	not method_allowed
} else := "scope_missing" if {
	not scope_granted
} else := "body_required" if {
	body_unreadable
} else := "guest_to_guest" if {
	names_another_guest
} else := "allowed"

# The routes an access token may reach, /v1/<route>[/...]: the scope the token
# must carry for each, the methods a guest may use, and the fields (query
# parameters and body fields alike, any letter case) that name a person. The
# field names are written case-folded (see fold), as a request's field names
# are before they are compared: folding them here once, rather than on every
# request, keeps the check cheap.
#   messages     POST {"toPersonId"} sends to a person; GET ?personId= lists a direct chat
#   memberships  POST {"personId"} adds a person to a room; GET ?personId= finds memberships
#   calls        POST {"toPersonId"} (or "personId") calls a person
#   people       GET /v1/people/{personId}, GET ?id=a,b; only reading: creating or
#                changing a person is an administrator's job, not a guest's
# Email fields (toPersonEmail, personEmail) are not checked: a guest has no
# email address a service can resolve (it is named only by its person id), so
# an email reaches a regular user. If guests ever get addresses, add the
# fields here with a check on their domain.
routes := {
	"messages": {
		"scope": "messaging",
		"methods": {"GET", "POST", "PUT", "DELETE"},
		"person_fields": {"topersonid", "personid"},
	},
	"memberships": {
		"scope": "messaging",
		"methods": {"GET", "POST", "PUT", "DELETE"},
		"person_fields": {"personid"},
	},
	"calls": {
		"scope": "calling",
		"methods": {"GET", "POST", "PUT", "DELETE"},
		"person_fields": {"topersonid", "personid"},
	},
	"people": {
		"scope": "people",
		"methods": {"GET"},
		"person_fields": {"id"},
	},
}

route := routes[name] if {
	input.parsed_path[0] == "v1"
	name := input.parsed_path[1]
}

method_allowed if input.attributes.request.http.method in route.methods

# The access token's scope claim is a space-separated list.
scope_granted if route.scope in split(input.token.claims.scope, " ")

# The people a POST or PUT reaches are named in its body: a body the proxy
# did not forward whole cannot be checked.
body_unreadable if {
	input.attributes.request.http.method in {"POST", "PUT"}
	not body_readable
}

# A body can be checked when the proxy forwarded all of it and it parsed into
# fields (JSON or a form).
body_readable if {
	is_object(input.parsed_body)
	not input.truncated_body
}

# Every id the request names a person by, case-folded: the path below the route
# (/v1/people/{personId}), and the person fields of the query and the body.
targets contains fold(segment) if {
	some i, segment in input.parsed_path
	i > 1
}

# The person fields of the query and the body: a field may hold a string or a
# list of them (a query parameter, a form field), and a list of people may be
# comma-separated (GET /v1/people?id=a,b).
targets contains fold(trim_space(id)) if {
	some fields in request_fields
	is_object(fields)
	some name, value in fields
	fold(name) in route.person_fields
	some item in as_list(value)
	is_string(item)
	some id in split(item, ",")
}

# The fields a request carries: its query parameters and its parsed body.
request_fields contains input.parsed_query

request_fields contains input.parsed_body

# fold compares text in any letter case (field names are compared so, since
# some JSON decoders match them so), as Java's equalsIgnoreCase, .NET's
# OrdinalIgnoreCase and Go's encoding/json do: through upper case first, so
# that "ſ" (long s) and "ı" (dotless i), whose upper case is ASCII but which
# lower() leaves alone, meet "s" and "i" ("toPerſonId" is toPersonId to them).
fold(s) := lower(upper(s))

as_list(value) := value if is_array(value)

as_list(value) := [value] if not is_array(value)

# Guest person ids start with "guest-" (regular ones never do). A guest may
# name itself; any other guest is out of its reach. (Negating the comparison
# with own_id, a rule, denies when the token has no subject to compare.)
names_another_guest if {
	some id in targets
	startswith(id, "guest-")
	not id == own_id
}

own_id := fold(input.token.subject)
