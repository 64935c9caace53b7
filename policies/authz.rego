# Package guestgate.authz is the policy guestgate asks about every request
# (query data.guestgate.authz.decision). It turns away requests without a
# good credential, hands a verified token to the package that owns its kind,
# and shapes that package's answer into the decision Envoy acts on.
#
# Each kind's package answers with a reason: "allowed", or why not.
#   xbs_anonymous     anonymous.rego         chat widget visitors and public-chat links
#   guest, access     guest.rego             a partner's guests: the login exchange, then messaging
#   secure_anonymous  secure_anonymous.rego  launchpad visitors
#   regular           (here)                 signed-in users: not restricted by this policy
package guestgate.authz

import data.guestgate.anonymous
import data.guestgate.guest
import data.guestgate.secure_anonymous

# decision is always an object. The chain below ends in an answer for every
# input, so this default is only a safety net: it denies.
default decision := {"allowed": false, "http_status": 403, "reason": "denied"}

# A credential the verifier rejected: 401, and RFC 6750's error code tells the
# client to get a new token. token_error wins even if a token is also present.
# The verifier sets token_error (a stable code) whenever no token verified;
# "missing" means the client sent nothing.
decision := {
	"allowed": false,
	"http_status": 401,
	"reason": "invalid_token",
	"token_error": input.token_error,
	"headers": {"www-authenticate": `Bearer error="invalid_token"`},
} if {
	input.token_error != null
	input.token_error != "missing"
}

# No credential at all: 401 naming the scheme, without an error code (RFC 6750 section 3).
else := {
	"allowed": false,
	"http_status": 401,
	"reason": "missing_token",
	"headers": {"www-authenticate": "Bearer"},
} if {
	not has_token
}

# A verified token its kind's package lets through with an ownership effect:
# guestgate applies the effect against its state store before it answers,
# and turns this allow into a 403 when the claim or the requirement fails
# (policies/README.md, "Ownership"). Only anonymous.rego names effects (for
# an unbound token in its own Kite channel), and only for requests it
# allows; the line applies only when it names one, and the next line is the
# same allow without it. (The kind compared first: OPA's rule index skips
# the line for every other kind.)
else := {
	"allowed": true,
	"http_status": 200,
	"reason": "allowed",
	"headers": identity_headers,
	"ownership": anonymous.ownership,
} if {
	input.token.kind == "xbs_anonymous"
	verdict == "allowed"
}

# A verified token its kind's package lets through: pass its identity upstream.
else := {
	"allowed": true,
	"http_status": 200,
	"reason": "allowed",
	"headers": identity_headers,
} if {
	verdict == "allowed"
}

# A verified token that may not make this request: 403 with the precise reason.
else := {"allowed": false, "http_status": 403, "reason": verdict}

# A verified token is an object; null or absent means none was sent.
has_token if is_object(input.token)

# verdict is "allowed" or the reason the verified token may not make this
# request. Exactly one line applies: the first whose condition holds, so a
# request is let through only when no line before names what it gets wrong
# (a line added anywhere above the kind's own verdict applies to every kind).
verdict := "token_identity_missing" if {
	not identity_complete
} else := "allowed" if {
	# Signed-in users are authorized by the services themselves.
	input.token.kind == "regular"
} else := "path_not_canonical" if {
	not path_canonical
} else := kind_verdict

# The package that owns the token's kind decides. (One rule per kind, each
# comparing input with a constant: OPA's rule index picks the one that
# applies without evaluating the others.)
kind_verdict := anonymous.reason if {
	input.token.kind == "xbs_anonymous"
} else := guest.guest_token_reason if {
	input.token.kind == "guest"
} else := guest.access_token_reason if {
	input.token.kind == "access"
} else := secure_anonymous.reason if {
	input.token.kind == "secure_anonymous"
} else := "kind_unknown"

# Upstream services tell callers apart by issuer and subject; a token missing
# either cannot be named, so it is not let through.
identity_complete if {
	is_string(input.token.kind)
	is_string(input.token.issuer)
	input.token.issuer != ""
	is_string(input.token.subject)
	input.token.subject != ""
}

# Restricted kinds are matched on path segments. A dot segment, or a slash or
# backslash that was percent-encoded inside a segment, could make an upstream
# resolve another path than the one checked here, so such paths are refused:
# every segment is a string that is not "." or "..", and holds no slash or
# backslash. The expression matches the segments that are canonical (empty,
# holding a character other than a dot, or three dots or more), and the
# comprehension counts those it does not match: a segment that is not a
# string fails the match (the built-in's type error leaves it undefined, and
# "not" of that is true), so it is counted and the path refused. Every kind's
# package reads the path only after this check: a path segment it reads is a
# string. (One regular expression per segment, counted in a comprehension:
# cheaper to evaluate than several checks, or a rule to negate.)
path_canonical if {
	is_array(input.parsed_path)
	count([segment |
		some segment in input.parsed_path
		not regex.match(`^(?:[^/\\]*[^/\\.][^/\\]*|\.\.\.+)?$`, segment)
	]) == 0
}

# Who is calling, on every allowed request. The subject is namespaced by its
# issuer because two issuers may hand out the same sub. (identity_complete
# made sure issuer and subject are strings.)
#
# An optional value that is not a non-empty string is left out rather than
# denied, and that cannot let anything through: these headers are built only
# once the verdict allowed, and no verdict reads them. Each value that does
# decide is checked as the verdict reads it, and a value of the wrong type
# denies there: the widget and the channel are strings in every session
# anonymous.rego lets through, and a scope that is not a string fails split
# (scope_missing, scope_invalid). What is left out is the display name alone,
# which no verdict reads: an upstream then gets no name, never a wrong one.
identity_headers := object.union(
	{
		"x-guestgate-subject": sprintf("%s|%s", [input.token.issuer, input.token.subject]),
		"x-guestgate-kind": input.token.kind,
		"x-guestgate-issuer": input.token.issuer,
	},
	{header: value |
		some header, value in optional_headers[input.token.kind]
		is_string(value)
		value != ""
	},
)

# The headers each kind passes upstream besides who it is: the display
# name, and what the token was issued for where its kind carries it. A value
# the token lacks, or leaves empty, is left out. (A rule per kind, each with
# a constant key: OPA evaluates only the token's kind's. Each value is read
# by a constant name, so a cached token keeps only the claims named here
# and in the kinds' packages, docs/performance.md.)
optional_headers["regular"] := {"x-guestgate-name": object.get(input.token, "name", null)}

optional_headers["xbs_anonymous"] := {
	"x-guestgate-name": object.get(input.token, "name", null),
	"x-guestgate-widget": object.get(input.token, ["claims", "custom:wid"], null),
	"x-guestgate-channel": object.get(input.token, ["claims", "custom:channel_id"], null),
}

optional_headers["guest"] := {"x-guestgate-name": object.get(input.token, "name", null)}

optional_headers["access"] := {
	"x-guestgate-name": object.get(input.token, "name", null),
	"x-guestgate-scope": object.get(input.token, ["claims", "scope"], null),
}

optional_headers["secure_anonymous"] := {
	"x-guestgate-name": object.get(input.token, "name", null),
	"x-guestgate-scope": object.get(input.token, ["claims", "scope"], null),
}
