package guestgate.secure_anonymous_test

import data.guestgate.secure_anonymous

# A SAT as the token API mints it: a launchpad user opening launchpad lp-123.

sat(claims) := {
	"kind": "secure_anonymous",
	"subject": "0b6f1c8e-4d7a-4e0b-9a51-3c2d1e0f9a77",
	"issuer": "https://guestgate.dev.invalid/sat",
	"name": "",
	"claims": object.union(
		{
			"sub": "0b6f1c8e-4d7a-4e0b-9a51-3c2d1e0f9a77",
			"account_id": "acct-1",
			"provider_id": "prov-1",
		},
		claims,
	),
}

launchpad_user := sat({"role": "launchpad_user", "scope": "launchpads/lp-123"})

request(method, path, tok) := {
	"attributes": {"request": {"http": {"method": method, "path": path}}},
	"parsed_path": split(trim_prefix(path, "/"), "/"),
	"parsed_query": {},
	"parsed_body": null,
	"truncated_body": false,
	"token": tok,
	"token_error": null,
}

test_launchpad_user_reaches_its_launchpad if {
	every path in ["/v1/launchpads/lp-123", "/v1/launchpads/lp-123/", "/v1/launchpads/lp-123/sessions/s-1"] {
		secure_anonymous.reason == "allowed" with input as request("GET", path, launchpad_user)
	}
	secure_anonymous.reason == "allowed" with input as request("POST", "/v1/launchpads/lp-123/sessions", launchpad_user)
}

test_launchpad_user_denied_outside_its_launchpad if {
	every path in [
		"/v1/launchpads/lp-999",
		"/v1/launchpads/lp-1234",
		"/v1/launchpads",
		"/v1/accounts/acct-1",
		"/v2/launchpads/lp-123",
		"/launchpads/lp-123",
		"/",
	] {
		secure_anonymous.reason == "scope_mismatch" with input as request("GET", path, launchpad_user)
	}
}

test_scope_that_is_not_one_launchpad_is_denied if {
	every scope in ["launchpads", "launchpads/", "launchpads/..", "launchpads/lp-123/admin", "accounts/acct-1", "/launchpads/lp-123"] {
		secure_anonymous.reason == "scope_invalid" with input as request("GET", "/v1/launchpads/lp-123", sat({"role": "launchpad_user", "scope": scope}))
	}
	secure_anonymous.reason == "scope_invalid" with input as request("GET", "/v1/launchpads/lp-123", sat({"role": "launchpad_user"}))
}

test_administrator_role_is_denied if {
	tok := sat({"role": "administrator", "scope": "launchpads/lp-123"})
	secure_anonymous.reason == "role_not_allowed" with input as request("GET", "/v1/launchpads/lp-123", tok)
}

test_token_without_a_role_is_denied if {
	secure_anonymous.reason == "role_not_allowed" with input as request("GET", "/v1/launchpads/lp-123", sat({"scope": "launchpads/lp-123"}))
}
