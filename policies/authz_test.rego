package guestgate.authz_test

import data.guestgate.authz

# Whole decisions, as guestgate reads them: credentials, dispatch by kind, and
# the identity headers of every kind. What each kind may do is tested beside
# its own package.

request(method, path, tok) := {
	"attributes": {"request": {"http": {"method": method, "path": path}}},
	"parsed_path": split(trim_prefix(path, "/"), "/"),
	"parsed_query": {},
	"parsed_body": null,
	"truncated_body": false,
	"token": tok,
	"token_error": null,
}

without_token(token_error) := object.union(
	request("GET", "/v1/messages", null),
	{"token_error": token_error},
)

anonymous_issuer := "https://cognito-idp.dev.guestgate.invalid/dev-pool"

kite_token := {
	"kind": "xbs_anonymous",
	"subject": "visitor-1",
	"issuer": anonymous_issuer,
	"name": "guest",
	"claims": {
		"sub": "visitor-1",
		"custom:wid": "W-DEMO",
		"custom:entry": "kite",
		"custom:channel_id": "kite-7f3a",
	},
}

regular_token := {
	"kind": "regular",
	"subject": "user-9",
	"issuer": anonymous_issuer,
	"name": "Ada",
	"claims": {"sub": "user-9", "token_use": "id"},
}

guest_token := {
	"kind": "guest",
	"subject": "partner-user-42",
	"issuer": "dev-guest-issuer",
	"name": "Pat Partner",
	"claims": {"sub": "partner-user-42"},
}

access_token := {
	"kind": "access",
	"subject": "guest-mfrggzdfmztwq2lknnwg23tpoa",
	"issuer": "https://guestgate.dev.invalid/access",
	"name": "Pat Partner",
	"claims": {"scope": "messaging calling people"},
}

sat := {
	"kind": "secure_anonymous",
	"subject": "0b6f1c8e",
	"issuer": "https://guestgate.dev.invalid/sat",
	"name": "",
	"claims": {"role": "launchpad_user", "scope": "launchpads/lp-123"},
}

# Credentials

test_request_without_a_credential_gets_401_missing_token if {
	authz.decision == {
		"allowed": false,
		"http_status": 401,
		"reason": "missing_token",
		"headers": {"www-authenticate": "Bearer"},
	} with input as without_token("missing")
}

test_input_without_token_fields_gets_401_missing_token if {
	authz.decision.reason == "missing_token" with input as {}
	authz.decision.reason == "missing_token" with input as {"token": "not-an-object"}
}

test_every_rejected_credential_gets_401_invalid_token if {
	every code in [
		"malformed", "too_large", "untrusted_issuer", "bad_algorithm", "bad_header",
		"bad_signature", "unknown_key", "keys_unavailable", "expired", "not_yet_valid",
		"bad_audience", "bad_claims", "revoked", "wrong_kind",
	] {
		authz.decision == {
			"allowed": false,
			"http_status": 401,
			"reason": "invalid_token",
			"token_error": code,
			"headers": {"www-authenticate": `Bearer error="invalid_token"`},
		} with input as without_token(code)
	}
}

test_token_error_wins_over_a_token if {
	req := object.union(request("GET", "/anything", regular_token), {"token_error": "expired"})
	authz.decision.reason == "invalid_token" with input as req
}

# Dispatch by kind

test_regular_user_is_allowed_with_its_identity if {
	authz.decision == {
		"allowed": true,
		"http_status": 200,
		"reason": "allowed",
		"headers": {
			"x-guestgate-subject": "https://cognito-idp.dev.guestgate.invalid/dev-pool|user-9",
			"x-guestgate-kind": "regular",
			"x-guestgate-issuer": anonymous_issuer,
			"x-guestgate-name": "Ada",
		},
	} with input as request("DELETE", "/calendar/events/../admin", regular_token)
}

test_unknown_kind_is_denied if {
	tok := object.union(regular_token, {"kind": "service_account"})
	authz.decision == {"allowed": false, "http_status": 403, "reason": "kind_unknown"} with input as request("GET", "/v1/messages", tok)
}

test_token_without_issuer_or_subject_is_denied if {
	every tok in [
		object.union(regular_token, {"subject": ""}),
		object.union(regular_token, {"issuer": null}),
		json.remove(regular_token, ["subject"]),
	] {
		authz.decision.reason == "token_identity_missing" with input as request("GET", "/", tok)
	}
}

test_paths_that_could_resolve_elsewhere_are_denied if {
	every segments in [
		["v1", "launchpads", "lp-123", "..", "lp-999"],
		["v1", "launchpads", "lp-123", "."],
		["v1", "launchpads", "lp-123", "../../lp-999"],
		["v1", "launchpads", "lp-123", "..\\lp-999"],
	] {
		req := object.union(request("GET", "/", sat), {"parsed_path": segments})
		authz.decision == {"allowed": false, "http_status": 403, "reason": "path_not_canonical"} with input as req
	}
}

# A segment that is not a string is not a path an upstream resolves as this
# policy would: refused for every kind whose package reads the path.
test_paths_with_a_segment_that_is_not_a_string_are_denied if {
	every case in [
		{"token": kite_token, "segments": ["conversations", "channels", {"id": "kite-7f3a"}, "MarkReadCommand"]},
		{"token": kite_token, "segments": ["conversations", "channels", ["kite-7f3a"], "MarkReadCommand"]},
		{"token": access_token, "segments": ["v1", "people", 2]},
		{"token": access_token, "segments": ["v1", "people", null]},
		{"token": guest_token, "segments": ["v1", "jwt", true]},
		{"token": sat, "segments": ["v1", "launchpads", ["lp-123"]]},
	] {
		req := object.union(request("GET", "/", case.token), {"parsed_path": case.segments})
		authz.decision.reason == "path_not_canonical" with input as req
	}
}

test_token_error_of_an_unexpected_type_gets_401 if {
	every code in [7, true, {"code": "expired"}, ["expired"]] {
		req := object.union(request("GET", "/anything", regular_token), {"token_error": code})
		authz.decision.reason == "invalid_token" with input as req
	}
}

test_token_that_is_not_an_object_gets_401 if {
	every tok in ["a.b.c", ["x"], 1, true] {
		req := object.union(request("GET", "/v1/messages", null), {"token": tok, "token_error": null})
		authz.decision.reason == "missing_token" with input as req
	}
}

# Only a whole "." or ".." segment is a dot segment: dots inside a segment
# are ordinary characters.
test_segments_with_dots_inside_are_canonical if {
	every segments in [
		["v1", "launchpads", "lp-1.2", "apps"],
		["v1", "launchpads", "lp-123", "..."],
		["v1", "launchpads", "lp-123", ".well-known"],
		["v1", "launchpads", "lp-123", "a..b"],
	] {
		authz.path_canonical with input as {"parsed_path": segments}
	}
}

test_request_without_a_parsed_path_is_not_canonical if {
	not authz.path_canonical with input as {}
	not authz.path_canonical with input as {"parsed_path": "/v1/launchpads/lp-123"}
}

test_denial_carries_the_reason_of_the_kind if {
	authz.decision == {"allowed": false, "http_status": 403, "reason": "route_not_allowed"} with input as request("GET", "/calendar/events", kite_token)
	authz.decision.reason == "guest_token_login_only" with input as request("GET", "/v1/messages", guest_token)
	authz.decision.reason == "scope_mismatch" with input as request("GET", "/v1/launchpads/lp-999", sat)
}

# Identity headers of each kind

test_anonymous_allow_names_widget_and_channel if {
	authz.decision == {
		"allowed": true,
		"http_status": 200,
		"reason": "allowed",
		"headers": {
			"x-guestgate-subject": "https://cognito-idp.dev.guestgate.invalid/dev-pool|visitor-1",
			"x-guestgate-kind": "xbs_anonymous",
			"x-guestgate-issuer": anonymous_issuer,
			"x-guestgate-name": "guest",
			"x-guestgate-widget": "W-DEMO",
			"x-guestgate-channel": "kite-7f3a",
		},
	} with input as request("POST", "/conversations/channels/kite-7f3a/MarkReadCommand", kite_token)
}

# Ownership effects: on the allows of an unbound anonymous token in a channel
# the registry does not list, and on no other decision.

unbound_token := {
	"kind": "xbs_anonymous",
	"subject": "visitor-2",
	"issuer": anonymous_issuer,
	"name": "guest",
	"claims": {"sub": "visitor-2", "custom:wid": "W-DEMO", "custom:authorization_type": "XBS_ANONYMOUS"},
}

unbound_headers := {
	"x-guestgate-subject": "https://cognito-idp.dev.guestgate.invalid/dev-pool|visitor-2",
	"x-guestgate-kind": "xbs_anonymous",
	"x-guestgate-issuer": anonymous_issuer,
	"x-guestgate-name": "guest",
	"x-guestgate-widget": "W-DEMO",
}

test_unbound_creation_of_its_own_channel_is_allowed_with_a_claim if {
	authz.decision == {
		"allowed": true,
		"http_status": 200,
		"reason": "allowed",
		"headers": unbound_headers,
		"ownership": {"channel": "kite-new", "need": "claim"},
	} with input as request("POST", "/conversations/channels/kite-new/CreateKiteChannelCommand", unbound_token)
}

test_unbound_command_in_its_own_channel_is_allowed_with_a_requirement if {
	authz.decision == {
		"allowed": true,
		"http_status": 200,
		"reason": "allowed",
		"headers": unbound_headers,
		"ownership": {"channel": "kite-new", "need": "require"},
	} with input as request("POST", "/conversations/channels/kite-new/MarkReadCommand", unbound_token)
}

test_allows_without_an_ownership_effect_carry_no_ownership if {
	every req in [
		request("POST", "/conversations/GetTokenCommand", unbound_token),
		request("POST", "/conversations/channels/public-lobby/JoinChannelCommand", unbound_token),
		request("POST", "/conversations/channels/support-1/MarkReadCommand", unbound_token),
		request("POST", "/conversations/channels/kite-7f3a/CreateKiteChannelCommand", kite_token),
		request("POST", "/v1/jwt/login", guest_token),
		request("GET", "/v1/launchpads/lp-123", sat),
		request("GET", "/anything", regular_token),
	] {
		authz.decision.allowed with input as req
		not authz.decision.ownership with input as req
	}
	authz.decision == {
		"allowed": true,
		"http_status": 200,
		"reason": "allowed",
		"headers": unbound_headers,
	} with input as request("POST", "/conversations/channels/public-lobby/MarkReadCommand", unbound_token)
}

test_denials_carry_no_ownership if {
	every req in [
		request("POST", "/conversations/channels/support-1/CreateKiteChannelCommand", unbound_token),
		request("POST", "/conversations/channels/team-private/MarkReadCommand", unbound_token),
		request("POST", "/conversations/channels/kite-new/MarkReadCommand", object.union(unbound_token, {"subject": ""})),
		object.union(
			request("POST", "/conversations/channels/kite-new/MarkReadCommand", unbound_token),
			{"token_error": "expired"},
		),
	] {
		not authz.decision.allowed with input as req
		not authz.decision.ownership with input as req
	}
	authz.decision == {"allowed": false, "http_status": 403, "reason": "channel_registered"} with input as request("POST", "/conversations/channels/support-1/CreateKiteChannelCommand", unbound_token)
	authz.decision == {"allowed": false, "http_status": 403, "reason": "widget_disabled"} with input as request("POST", "/conversations/channels/kite-new/MarkReadCommand", unbound_token)
		with data.registry.widgets["W-DEMO"].anonymous_sessions as false
}

test_guest_login_allow_names_the_guest if {
	authz.decision.headers == {
		"x-guestgate-subject": "dev-guest-issuer|partner-user-42",
		"x-guestgate-kind": "guest",
		"x-guestgate-issuer": "dev-guest-issuer",
		"x-guestgate-name": "Pat Partner",
	} with input as request("POST", "/v1/jwt/login", guest_token)
}

test_access_allow_names_the_scope if {
	authz.decision.headers == {
		"x-guestgate-subject": "https://guestgate.dev.invalid/access|guest-mfrggzdfmztwq2lknnwg23tpoa",
		"x-guestgate-kind": "access",
		"x-guestgate-issuer": "https://guestgate.dev.invalid/access",
		"x-guestgate-name": "Pat Partner",
		"x-guestgate-scope": "messaging calling people",
	} with input as request("GET", "/v1/messages", access_token)
}

test_sat_allow_names_the_scope_and_leaves_out_an_empty_name if {
	authz.decision.headers == {
		"x-guestgate-subject": "https://guestgate.dev.invalid/sat|0b6f1c8e",
		"x-guestgate-kind": "secure_anonymous",
		"x-guestgate-issuer": "https://guestgate.dev.invalid/sat",
		"x-guestgate-scope": "launchpads/lp-123",
	} with input as request("GET", "/v1/launchpads/lp-123/sessions", sat)
}

test_regular_user_claims_are_not_passed_as_context if {
	tok := object.union(regular_token, {"claims": {"scope": "admin", "custom:wid": "W-DEMO"}})
	not authz.decision.headers["x-guestgate-scope"] with input as request("GET", "/", tok)
	not authz.decision.headers["x-guestgate-widget"] with input as request("GET", "/", tok)
}
