package guestgate.authz_test

import data.guestgate.authz

token := {
	"kind": "xbs_anonymous",
	"subject": "s-1",
	"claims": {"custom:wid": "W-DEMO", "custom:channel_id": "support-1"},
}

test_widget_visitor_marks_read if {
	authz.decision.allowed with input as {
		"attributes": {"request": {"http": {"method": "POST"}}},
		"parsed_path": ["conversations", "channels", "support-1", "MarkReadCommand"],
		"token": token,
	}
}

test_browsing_is_forbidden if {
	d := authz.decision with input as {
		"attributes": {"request": {"http": {"method": "POST"}}},
		"parsed_path": ["conversations", "channels", "support-1", "ListChannelsCommand"],
		"token": token,
	}
	d.http_status == 403
}

test_no_token_is_unauthenticated if {
	d := authz.decision with input as {"token": null, "token_error": "expired"}
	d == {"allowed": false, "http_status": 401, "reason": "expired"}
}

test_registry_data_at_folder_path if {
	data.registry.widgets["W-DEMO"].anonymous_sessions
	data.registry.channels["public-lobby"].public
	not data.registry.widgets["W-OFF"].anonymous_sessions
}
