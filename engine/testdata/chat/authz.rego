# A small chat policy in the shape of guestgate's, used by the engine's
# benchmark and its opa-test parity check. Not the product policy.
package guestgate.authz

default decision := {"allowed": false, "http_status": 401, "reason": "missing"}

decision := deny(401, input.token_error) if input.token == null

decision := allow if {
	input.token.kind == "xbs_anonymous"
	anonymous_chat_allowed
}

decision := deny(403, "forbidden") if {
	input.token.kind == "xbs_anonymous"
	not anonymous_chat_allowed
}

allow := {
	"allowed": true,
	"reason": "anonymous_chat",
	"headers": {
		"x-guestgate-subject": input.token.subject,
		"x-guestgate-kind": input.token.kind,
		"x-guestgate-channel": input.token.claims["custom:channel_id"],
	},
}

deny(status, reason) := {"allowed": false, "http_status": status, "reason": reason}

anonymous_chat_allowed if {
	input.attributes.request.http.method == "POST"
	input.parsed_path = ["conversations", "channels", channel, command]
	command in data.chat.anonymous_commands
	channel == input.token.claims["custom:channel_id"]
	widget := data.registry.widgets[input.token.claims["custom:wid"]]
	widget.anonymous_sessions
	channel in widget.channels
}
