# Package guestgate.guest decides what a partner's guests may do. A raw guest
# token (kind "guest") is only ever exchanged for an access token; the access
# token (kind "access") reaches messaging, calling and people within its
# scopes, and never another guest.
#
# Every check below negates a rule ("not scope_granted"), so a claim, a path
# segment or a body that is missing denies rather than allows. (Negating a call
# instead, as in "not x in list", is undefined, not true, when x is missing.)
# A value of an unexpected type denies too, never is skipped: a person field
# holding an object, a number or a nested list is refused before anyone is
# looked for in it, since an upstream may read {"id": ...} or coerce 2 where
# this policy saw no person. "allowed" is the last line of each chain: a
# check added before it applies.
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
} else := "fields_invalid" if {
	not fields_readable
} else := "person_field_invalid" if {
	person_field_invalid
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
# fields (JSON or a form). Only false says the body is whole: a
# truncated_body of another type, or none, does not.
body_readable if {
	is_object(input.parsed_body)
	input.truncated_body == false
}

# The query of every request, and the body of any, are objects of fields
# where they were sent (the body is null when none was, or when its type is
# neither JSON nor a form): a body that is a JSON array, a string or a
# number could name a person where this policy does not look. An input that
# lacks either is not one guestgate builds, and denies too.
fields_readable if {
	is_object(input.parsed_query)
	type_name(input.parsed_body) in {"null", "object"}
}

# A person field holds a person id, or a list of them: a query parameter and
# a form field are lists of strings, a JSON field a string (or a list). Any
# other value (null, a boolean, a number, an object, an empty list, a list
# holding anything but strings) denies: an upstream may read an id out of
# it that this policy never saw.
person_field_invalid if {
	some item in person_items
	not is_string(item)
}

# Every item the person fields of the query and the body hold, their names
# in any letter case: a field's value, or each item of its list. (fold needs
# a string: the names of a JSON object's members are strings, RFC 8259
# section 4, and so are a query's and a form's, so no field is passed over.
# fields_readable made sure both are objects; a null body has no fields.)
person_items contains item if {
	some fields in request_fields
	some name, value in fields
	fold(name) in route.person_fields
	some item in as_list(value)
}

# The fields a request carries: its query parameters and its parsed body.
request_fields contains input.parsed_query

request_fields contains input.parsed_body

# A non-empty list is its items; any other value is one item. (An empty list
# is so the one item [], which is not a string: it names no one, and no
# person field is sent so.)
as_list(value) := value if {
	is_array(value)
	count(value) > 0
} else := [value]

# Every id the request names a person by, case-folded: the path below the route
# (/v1/people/{personId}), and the person fields of the query and the body.
# (Every segment is a string: authz.rego refuses any other path before a
# kind's package is asked.)
targets contains fold(segment) if {
	some i, segment in input.parsed_path
	i > 1
}

# A list of people may be comma-separated (GET /v1/people?id=a,b).
# person_field_invalid refused any item that is not a string before
# names_another_guest reads this, so no item is passed over here.
targets contains fold(trim_space(id)) if {
	some item in person_items
	some id in split(item, ",")
}

# fold compares text in any letter case (field names are compared so, since
# some JSON decoders match them so), as Java's equalsIgnoreCase, .NET's
# OrdinalIgnoreCase and Go's encoding/json do: through upper case first, so
# that "ſ" (long s) and "ı" (dotless i), whose upper case is ASCII but which
# lower() leaves alone, meet "s" and "i" ("toPerſonId" is toPersonId to them).
fold(s) := lower(upper(s))

# Guest person ids start with "guest-" (regular ones never do). A guest may
# name itself; any other guest is out of its reach. (Negating the comparison
# with own_id, a rule, denies when the token has no subject to compare.)
names_another_guest if {
	some id in targets
	startswith(id, "guest-")
	not id == own_id
}

own_id := fold(input.token.subject)
