package guestgate.guest_test

import data.guestgate.guest

# A partner's raw guest token, and the access token the login exchange gives
# the same guest. Person ids: the guest's own, another guest's, a regular user's.

own_id := "guest-mfrggzdfmztwq2lknnwg23tpoa"

other_guest := "guest-nbswy3dpo5xxe3denbswy3dp"

regular_person := "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9hbGljZQ"

guest_token := {
	"kind": "guest",
	"subject": "partner-user-42",
	"issuer": "dev-guest-issuer",
	"name": "Pat Partner",
	"claims": {"sub": "partner-user-42", "name": "Pat Partner", "iss": "dev-guest-issuer", "exp": 1900000000},
}

access_token := access_token_with_scope("messaging calling people")

access_token_with_scope(scope) := {
	"kind": "access",
	"subject": own_id,
	"issuer": "https://guestgate.dev.invalid/access",
	"name": "Pat Partner",
	"claims": {
		"sub": own_id,
		"scope": scope,
		"guest_iss": "dev-guest-issuer",
		"guest_sub": "partner-user-42",
	},
}

request(method, path, tok) := {
	"attributes": {"request": {"http": {"method": method, "path": path}}},
	"parsed_path": split(trim_prefix(path, "/"), "/"),
	"parsed_query": {},
	"parsed_body": null,
	"truncated_body": false,
	"token": tok,
	"token_error": null,
}

with_query(req, query) := object.union(req, {"parsed_query": query})

with_body(req, body) := object.union(req, {"parsed_body": body})

# The raw guest token

test_guest_token_reaches_the_login_exchange if {
	guest.guest_token_reason == "allowed" with input as request("POST", "/v1/jwt/login", guest_token)
}

test_guest_token_reaches_nothing_but_the_login_exchange if {
	every req in [
		request("GET", "/v1/jwt/login", guest_token),
		request("POST", "/v1/jwt/login/extra", guest_token),
		request("GET", "/v1/messages", guest_token),
		request("POST", "/v1/messages", guest_token),
		request("GET", "/v1/people/me", guest_token),
	] {
		guest.guest_token_reason == "guest_token_login_only" with input as req
	}
}

# The access token: routes, methods, scopes

test_access_token_reaches_messaging_calling_and_people if {
	every req in [
		request("GET", "/v1/messages", access_token),
		request("DELETE", "/v1/messages/msg-1", access_token),
		request("GET", "/v1/memberships", access_token),
		request("GET", "/v1/calls/call-1", access_token),
		request("GET", "/v1/people/me", access_token),
		request("GET", concat("/", ["/v1/people", regular_person]), access_token),
	] {
		guest.access_token_reason == "allowed" with input as req
	}
}

test_access_token_denied_outside_its_routes if {
	every path in ["/v1/rooms", "/v1/jwt/login", "/v1/admin/guests", "/v2/messages", "/messages", "/"] {
		guest.access_token_reason == "route_not_allowed" with input as request("GET", path, access_token)
	}
}

test_access_token_only_reads_people if {
	every req in [
		with_body(request("POST", "/v1/people", access_token), {"emails": ["x@example.com"]}),
		request("DELETE", concat("/", ["/v1/people", regular_person]), access_token),
		request("PATCH", "/v1/messages/msg-1", access_token),
	] {
		guest.access_token_reason == "method_not_allowed" with input as req
	}
}

test_request_without_a_method_is_denied if {
	req := json.remove(request("GET", "/v1/messages", access_token), ["attributes/request/http/method"])
	guest.access_token_reason == "method_not_allowed" with input as req
}

test_access_token_needs_the_scope_of_the_route if {
	tok := access_token_with_scope("messaging")
	guest.access_token_reason == "allowed" with input as request("GET", "/v1/messages", tok)
	guest.access_token_reason == "scope_missing" with input as request("GET", "/v1/calls", tok)
	guest.access_token_reason == "scope_missing" with input as request("GET", "/v1/people/me", tok)
}

test_access_token_without_a_scope_claim_is_denied if {
	tok := json.remove(access_token, ["claims/scope"])
	guest.access_token_reason == "scope_missing" with input as request("GET", "/v1/messages", tok)
}

# Bodies

test_message_to_a_regular_user_is_allowed if {
	req := with_body(request("POST", "/v1/messages", access_token), {"toPersonId": regular_person, "text": "hi"})
	guest.access_token_reason == "allowed" with input as req
}

test_message_by_email_is_allowed if {
	req := with_body(request("POST", "/v1/messages", access_token), {"toPersonEmail": "alice@example.com", "text": "hi"})
	guest.access_token_reason == "allowed" with input as req
}

test_post_whose_body_was_not_forwarded_is_denied if {
	guest.access_token_reason == "body_required" with input as request("POST", "/v1/messages", access_token)
}

test_post_whose_body_was_truncated_is_denied if {
	req := object.union(
		with_body(request("POST", "/v1/messages", access_token), {"text": "hi"}),
		{"truncated_body": true},
	)
	guest.access_token_reason == "body_required" with input as req
}

test_post_whose_body_is_not_an_object_is_denied if {
	req := with_body(request("POST", "/v1/calls", access_token), [{"toPersonId": other_guest}])
	guest.access_token_reason == "body_required" with input as req
}

# Never another guest

test_message_to_another_guest_is_denied if {
	req := with_body(request("POST", "/v1/messages", access_token), {"toPersonId": other_guest, "text": "hi"})
	guest.access_token_reason == "guest_to_guest" with input as req
}

test_adding_another_guest_to_a_room_is_denied if {
	req := with_body(request("POST", "/v1/memberships", access_token), {"roomId": "room-1", "personId": other_guest})
	guest.access_token_reason == "guest_to_guest" with input as req
}

test_calling_another_guest_is_denied if {
	req := with_body(request("POST", "/v1/calls", access_token), {"toPersonId": other_guest})
	guest.access_token_reason == "guest_to_guest" with input as req
}

test_looking_up_another_guest_is_denied if {
	guest.access_token_reason == "guest_to_guest" with input as request("GET", concat("/", ["/v1/people", other_guest]), access_token)
}

test_listing_people_including_another_guest_is_denied if {
	every ids in [[other_guest], [concat(",", [regular_person, other_guest])], [regular_person, concat(" ", ["", other_guest])]] {
		req := with_query(request("GET", "/v1/people", access_token), {"id": ids})
		guest.access_token_reason == "guest_to_guest" with input as req
	}
}

test_listing_direct_messages_with_another_guest_is_denied if {
	req := with_query(request("GET", "/v1/messages", access_token), {"personId": [other_guest]})
	guest.access_token_reason == "guest_to_guest" with input as req
}

test_guest_ids_are_recognised_in_any_letter_case if {
	req := with_body(request("POST", "/v1/messages", access_token), {"TOPERSONID": upper(other_guest)})
	guest.access_token_reason == "guest_to_guest" with input as req
}

test_guest_ids_are_recognised_in_form_bodies if {
	req := with_body(request("POST", "/v1/messages", access_token), {"toPersonId": [other_guest], "text": ["hi"]})
	guest.access_token_reason == "guest_to_guest" with input as req
}

test_guest_ids_are_denied_when_the_token_names_no_subject if {
	tok := json.remove(access_token, ["subject"])
	guest.access_token_reason == "guest_to_guest" with input as request("GET", concat("/", ["/v1/people", own_id]), tok)
}

test_guest_may_reach_itself if {
	guest.access_token_reason == "allowed" with input as request("GET", concat("/", ["/v1/people", own_id]), access_token)
	req := with_query(request("GET", "/v1/people", access_token), {"id": [concat(",", [own_id, regular_person])]})
	guest.access_token_reason == "allowed" with input as req
}

# A value of an unexpected type denies

# Every JSON type a person field may be given, and the answer: a string or a
# list of strings is read (each naming a regular user here, or another
# guest), anything else is refused as it stands, whoever it names.
person_field_values := [
	{"value": regular_person, "want": "allowed"},
	{"value": [regular_person], "want": "allowed"},
	{"value": [regular_person, concat(",", [regular_person, regular_person])], "want": "allowed"},
	{"value": other_guest, "want": "guest_to_guest"},
	{"value": [regular_person, other_guest], "want": "guest_to_guest"},
	{"value": null, "want": "person_field_invalid"},
	{"value": true, "want": "person_field_invalid"},
	{"value": false, "want": "person_field_invalid"},
	{"value": 2, "want": "person_field_invalid"},
	{"value": 0, "want": "person_field_invalid"},
	{"value": -1.5, "want": "person_field_invalid"},
	{"value": [[other_guest]], "want": "person_field_invalid"},
	{"value": [[regular_person]], "want": "person_field_invalid"},
	{"value": [{"id": other_guest}], "want": "person_field_invalid"},
	{"value": [regular_person, {"id": other_guest}], "want": "person_field_invalid"},
	{"value": [regular_person, 2], "want": "person_field_invalid"},
	{"value": [regular_person, null], "want": "person_field_invalid"},
	{"value": {"id": other_guest}, "want": "person_field_invalid"},
	{"value": {}, "want": "person_field_invalid"},
	{"value": [], "want": "person_field_invalid"},
]

# Each route's requests that carry a person field: in the query of a GET, and
# in the body of a POST where the route takes one (else of a GET: a body is
# read whatever the method).
person_field_requests(name, route, field, value) := [
	with_query(request("GET", concat("/", ["/v1", name]), access_token), {field: value}),
	with_body(request(body_method(route), concat("/", ["/v1", name]), access_token), {field: value, "text": "hi"}),
]

body_method(route) := "POST" if "POST" in route.methods

body_method(route) := "GET" if not "POST" in route.methods

# Every JSON type in every person field of every route, query and body, its
# name in the routes table's case and in upper case: nothing but a string or
# a list of strings gets past the check.
test_person_field_of_an_unexpected_type_is_denied_in_every_position if {
	mismatches := {[name, field, case.value, i, got] |
		some name, route in guest.routes
		some person_field in route.person_fields
		some field in {person_field, upper(person_field)}
		some case in person_field_values
		some i, req in person_field_requests(name, route, field, case.value)
		got := guest.access_token_reason with input as req
		got != case.want
	}
	print("mismatches:", mismatches)
	mismatches == set()
}

test_the_table_covers_every_route_and_json_type if {
	count(guest.routes) == 4
	types := {type_name(case.value) | some case in person_field_values}
	types == {"null", "boolean", "number", "string", "array", "object"}
}

# The issue's example: POST /v1/messages whose toPersonId hides another guest.
test_message_to_another_guest_hidden_in_another_type_is_denied if {
	every value in [{"id": other_guest}, [[other_guest]], [{"id": other_guest}], 2, true] {
		req := with_body(request("POST", "/v1/messages", access_token), {"toPersonId": value, "text": "hi"})
		guest.access_token_reason == "person_field_invalid" with input as req
	}
}

test_person_field_of_an_unexpected_type_is_denied_under_unicode_case_folding if {
	req := with_body(request("POST", "/v1/messages", access_token), {"toPerſonId": {"id": other_guest}})
	guest.access_token_reason == "person_field_invalid" with input as req
}

# Only person fields are held to a type: a message's other fields are the
# upstream's business.
test_other_fields_of_any_type_are_allowed if {
	req := with_body(request("POST", "/v1/messages", access_token), {"toPersonId": regular_person, "text": {"a": [1, null]}, "files": [[]]})
	guest.access_token_reason == "allowed" with input as req
}

test_body_or_query_that_is_not_an_object_of_fields_is_denied if {
	every body in [[{"toPersonId": other_guest}], [], other_guest, 2, true] {
		req := with_body(request("GET", "/v1/messages", access_token), body)
		guest.access_token_reason == "fields_invalid" with input as req
	}
	every query in [[{"personId": other_guest}], other_guest, null] {
		req := with_query(request("GET", "/v1/messages", access_token), query)
		guest.access_token_reason == "fields_invalid" with input as req
	}
}

test_input_without_a_query_or_a_body_is_denied if {
	every part in ["parsed_query", "parsed_body"] {
		req := json.remove(request("GET", "/v1/messages", access_token), [part])
		guest.access_token_reason == "fields_invalid" with input as req
	}
}

test_body_not_said_to_be_whole_is_denied if {
	every truncated in [null, "false", 0, []] {
		req := object.union(
			with_body(request("POST", "/v1/messages", access_token), {"toPersonId": regular_person}),
			{"truncated_body": truncated},
		)
		guest.access_token_reason == "body_required" with input as req
	}
	req := json.remove(with_body(request("POST", "/v1/messages", access_token), {"toPersonId": regular_person}), ["truncated_body"])
	guest.access_token_reason == "body_required" with input as req
}

# Java, .NET and Go decoders that match field names in any letter case fold
# with Unicode's simple case mappings, under which "ſ" (long s) is "s", "ı"
# (dotless i) is "i" and "K" (Kelvin sign) is "k": such a field names a
# person to them, so it does to the policy.
test_person_fields_are_recognised_under_unicode_case_folding if {
	every field in ["toPerſonId", "toPersonıd", "personıd", "PERSONİD"] {
		req := with_body(request("POST", "/v1/messages", access_token), {field: other_guest, "text": "hi"})
		guest.access_token_reason == "guest_to_guest" with input as req
	}
}

test_guest_ids_are_recognised_under_unicode_case_folding if {
	every id in [replace(other_guest, "s", "ſ"), replace(upper(other_guest), "S", "ſ")] {
		req := with_body(request("POST", "/v1/messages", access_token), {"toPersonId": id})
		guest.access_token_reason == "guest_to_guest" with input as req
	}
}

# The routes table holds its person fields already case-folded, since a
# request's field names are folded before they are compared: a field written
# there in another case would never match, and its people would go unchecked.
test_route_person_fields_are_written_case_folded if {
	every route in guest.routes {
		count(route.person_fields) > 0
		every field in route.person_fields {
			field == guest.fold(field)
		}
	}
}
