package guestgate.anonymous_test

import data.guestgate.anonymous

# Tokens as guestgate's issuer mints them (and one from an external pool),
# against the dev registry in registry/: widget W-DEMO on with channel
# support-1, W-OFF off; public-lobby public, support-1 and team-private not.

token(claims) := {
	"kind": "xbs_anonymous",
	"subject": "visitor-1",
	"issuer": "https://cognito-idp.dev.guestgate.invalid/dev-pool",
	"name": "guest",
	"email": "anonymous-w-demo@anonymous.dev.guestgate.invalid",
	"expires_at": 1900000000,
	"claims": object.union(
		{
			"sub": "visitor-1",
			"custom:authorization_type": "XBS_ANONYMOUS",
			"token_use": "id",
		},
		claims,
	),
}

kite_token := token({"custom:wid": "W-DEMO", "custom:entry": "kite", "custom:channel_id": "kite-7f3a"})

link_token := token({"custom:entry": "public_link", "custom:channel_id": "public-lobby"})

unbound_token := token({"custom:wid": "W-DEMO"})

request(method, path, tok) := {
	"attributes": {"request": {"http": {"method": method, "path": path}}},
	"parsed_path": split(trim_prefix(path, "/"), "/"),
	"parsed_query": {},
	"parsed_body": null,
	"truncated_body": false,
	"token": tok,
	"token_error": null,
}

post(path, tok) := request("POST", path, tok)

# Routes and commands

test_routes_outside_the_chat_api_are_denied if {
	every path in [
		"/calendar/events",
		"/directory/users",
		"/admin/widgets",
		"/channels",
		"/conversations/channels/public-lobby",
		"/conversations/channels/kite-7f3a/MarkReadCommand/extra",
		"/",
	] {
		anonymous.reason == "route_not_allowed" with input as request("GET", path, kite_token)
	}
}

test_commands_other_than_post_are_denied if {
	every method in ["GET", "PUT", "DELETE", "HEAD", "post"] {
		anonymous.reason == "method_not_allowed" with input as request(method, "/conversations/GetTokenCommand", kite_token)
	}
	no_method := json.remove(post("/conversations/GetTokenCommand", kite_token), ["attributes/request/http/method"])
	anonymous.reason == "method_not_allowed" with input as no_method
}

test_commands_not_in_the_list_are_denied if {
	every path in [
		"/conversations/ListChannelsCommand",
		"/conversations/channels/kite-7f3a/SendMessageCommand",
		"/conversations/channels/kite-7f3a/DeleteChannelCommand",
		"/conversations/channels",
	] {
		anonymous.reason == "command_not_allowed" with input as post(path, kite_token)
	}
}

test_command_removed_from_the_data_is_denied if {
	anonymous.reason == "command_not_allowed" with input as post("/conversations/channels/kite-7f3a/MarkReadCommand", kite_token)
		with data.chat.anonymous_commands as ["GetTokenCommand"]
}

test_command_on_the_wrong_path_shape_is_denied if {
	anonymous.reason == "command_path_mismatch" with input as post("/conversations/MarkReadCommand", kite_token)
	anonymous.reason == "command_path_mismatch" with input as post("/conversations/channels/kite-7f3a/GetTokenCommand", kite_token)
}

test_token_with_an_unknown_entry_is_denied if {
	every claims in [
		{"custom:wid": "W-DEMO", "custom:entry": "embed", "custom:channel_id": "kite-7f3a"},
		{"custom:wid": "W-DEMO", "custom:entry": "kite"},
		{"custom:wid": "W-DEMO", "custom:entry": "public_link", "custom:channel_id": "public-lobby"},
		{"custom:wid": "W-DEMO", "custom:channel_id": "support-1"},
		{"custom:channel_id": "public-lobby"},
		{},
	] {
		anonymous.reason == "entry_unknown" with input as post("/conversations/GetTokenCommand", token(claims))
	}
}

test_claims_of_an_unexpected_type_select_no_session if {
	every claims in [
		{"custom:wid": ["W-DEMO"], "custom:entry": "kite", "custom:channel_id": "kite-7f3a"},
		{"custom:wid": "W-DEMO", "custom:entry": "kite", "custom:channel_id": {"id": "kite-7f3a"}},
		{"custom:wid": "W-DEMO", "custom:entry": ["kite"], "custom:channel_id": "kite-7f3a"},
		{"custom:entry": "public_link", "custom:channel_id": ["public-lobby"]},
		{"custom:wid": 7},
		{"custom:wid": {"id": "W-DEMO"}},
		{"custom:wid": "W-DEMO", "custom:entry": null},
		{"custom:wid": "W-DEMO", "custom:channel_id": null},
	] {
		anonymous.reason == "entry_unknown" with input as post("/conversations/GetTokenCommand", token(claims))
	}
}

test_claims_that_are_not_an_object_select_no_session if {
	every claims in [null, "custom:wid", ["W-DEMO"]] {
		tok := object.union(unbound_token, {"claims": claims})
		anonymous.reason == "entry_unknown" with input as post("/conversations/GetTokenCommand", tok)
	}
}

# Lists of data of another type list nothing: an object's values or a
# string are not read as a list.
test_command_lists_of_an_unexpected_type_list_nothing if {
	every commands in [{"a": "GetTokenCommand"}, "GetTokenCommand", null] {
		anonymous.reason == "command_not_allowed" with input as post("/conversations/GetTokenCommand", kite_token)
			with data.chat.anonymous_commands as commands
	}
	every commands in [{"a": "GetTokenCommand"}, "GetTokenCommand"] {
		anonymous.reason == "command_path_mismatch" with input as post("/conversations/GetTokenCommand", kite_token)
			with data.chat.commands_without_channel as commands
	}
}

test_missing_command_list_denies_every_command if {
	anonymous.reason == "command_not_allowed" with input as post("/conversations/GetTokenCommand", kite_token)
		with data.chat as {}
}

# Widget sessions (custom:entry "kite")

test_kite_token_gets_a_chat_token if {
	anonymous.reason == "allowed" with input as post("/conversations/GetTokenCommand", kite_token)
}

test_kite_token_creates_its_own_kite_channel if {
	anonymous.reason == "allowed" with input as post("/conversations/channels/kite-7f3a/CreateKiteChannelCommand", kite_token)
}

test_kite_token_may_use_every_listed_command_in_its_channel if {
	every command in data.chat.anonymous_commands {
		some path in [
			concat("/", ["/conversations", command]),
			concat("/", ["/conversations/channels/kite-7f3a", command]),
		]
		anonymous.reason == "allowed" with input as post(path, kite_token)
	}
}

test_kite_token_denied_in_another_channel if {
	every channel in ["kite-other", "support-1", "public-lobby"] {
		path := concat("/", ["/conversations/channels", channel, "MarkReadCommand"])
		anonymous.reason == "channel_not_bound" with input as post(path, kite_token)
	}
}

test_kite_token_cannot_create_another_channel if {
	anonymous.reason == "channel_not_bound" with input as post("/conversations/channels/kite-other/CreateKiteChannelCommand", kite_token)
}

test_kite_token_denied_when_widget_turned_off if {
	anonymous.reason == "widget_disabled" with input as post("/conversations/GetTokenCommand", kite_token)
		with data.registry.widgets["W-DEMO"].anonymous_sessions as false
}

test_kite_token_of_a_disabled_widget_is_denied if {
	tok := token({"custom:wid": "W-OFF", "custom:entry": "kite", "custom:channel_id": "kite-7f3a"})
	anonymous.reason == "widget_disabled" with input as post("/conversations/channels/kite-7f3a/MarkReadCommand", tok)
}

test_kite_token_of_an_unknown_widget_is_denied if {
	tok := token({"custom:wid": "W-GONE", "custom:entry": "kite", "custom:channel_id": "kite-7f3a"})
	anonymous.reason == "widget_unknown" with input as post("/conversations/GetTokenCommand", tok)
}

test_kite_token_denied_when_widget_removed_from_registry if {
	anonymous.reason == "widget_unknown" with input as post("/conversations/GetTokenCommand", kite_token)
		with data.registry.widgets as {"W-OFF": {"anonymous_sessions": false, "channels": []}}
}

# Public-chat links (custom:entry "public_link")

test_link_token_acts_in_its_public_channel if {
	every command in ["JoinChannelCommand", "MarkReadCommand", "UploadFileCommand"] {
		path := concat("/", ["/conversations/channels/public-lobby", command])
		anonymous.reason == "allowed" with input as post(path, link_token)
	}
	anonymous.reason == "allowed" with input as post("/conversations/GetTokenCommand", link_token)
}

test_link_token_denied_when_channel_made_private if {
	every path in ["/conversations/GetTokenCommand", "/conversations/channels/public-lobby/MarkReadCommand"] {
		anonymous.reason == "channel_not_public" with input as post(path, link_token)
			with data.registry.channels["public-lobby"].public as false
	}
}

test_link_token_to_a_channel_that_is_not_public_is_denied if {
	tok := token({"custom:entry": "public_link", "custom:channel_id": "support-1"})
	anonymous.reason == "channel_not_public" with input as post("/conversations/channels/support-1/MarkReadCommand", tok)
}

test_link_token_denied_when_channel_removed_from_registry if {
	tok := token({"custom:entry": "public_link", "custom:channel_id": "gone-channel"})
	anonymous.reason == "channel_unknown" with input as post("/conversations/channels/gone-channel/MarkReadCommand", tok)
}

test_link_token_denied_in_another_channel if {
	every channel in ["team-private", "support-1", "kite-7f3a"] {
		path := concat("/", ["/conversations/channels", channel, "JoinChannelCommand"])
		anonymous.reason == "channel_not_bound" with input as post(path, link_token)
	}
}

test_link_token_cannot_create_a_channel if {
	anonymous.reason == "channel_create_not_allowed" with input as post("/conversations/channels/public-lobby/CreateKiteChannelCommand", link_token)
}

# Tokens of an external user pool (a widget, no entry, no channel)

test_unbound_token_gets_a_chat_token if {
	anonymous.reason == "allowed" with input as post("/conversations/GetTokenCommand", unbound_token)
}

test_unbound_token_acts_in_a_channel_assigned_to_its_widget if {
	anonymous.reason == "allowed" with input as post("/conversations/channels/support-1/MarkReadCommand", unbound_token)
}

test_unbound_token_joins_an_assigned_public_channel if {
	anonymous.reason == "allowed" with input as post("/conversations/channels/public-lobby/JoinChannelCommand", unbound_token)
		with data.registry.widgets["W-DEMO"].channels as ["support-1", "public-lobby"]
}

test_unbound_token_cannot_join_a_channel_that_is_not_public if {
	anonymous.reason == "channel_not_public" with input as post("/conversations/channels/support-1/JoinChannelCommand", unbound_token)
}

test_unbound_token_denied_in_a_channel_not_assigned_to_its_widget if {
	every path in [
		"/conversations/channels/public-lobby/MarkReadCommand",
		"/conversations/channels/public-lobby/JoinChannelCommand",
		"/conversations/channels/team-private/MarkReadCommand",
	] {
		anonymous.reason == "channel_not_assigned" with input as post(path, unbound_token)
	}
}

test_unbound_token_denied_when_its_widget_lists_no_channels if {
	anonymous.reason == "channel_not_assigned" with input as post("/conversations/channels/support-1/MarkReadCommand", unbound_token)
		with data.registry.widgets["W-DEMO"] as {"anonymous_sessions": true}
}

test_unbound_token_denied_when_its_widgets_channels_are_not_a_list if {
	every channels in [{"a": "support-1"}, "support-1", null] {
		anonymous.reason == "channel_not_assigned" with input as post("/conversations/channels/support-1/MarkReadCommand", unbound_token)
			with data.registry.widgets["W-DEMO"].channels as channels
	}
}

test_unbound_token_denied_in_a_channel_the_registry_does_not_know if {
	anonymous.reason == "channel_unknown" with input as post("/conversations/channels/kite-7f3a/MarkReadCommand", unbound_token)
}

test_unbound_token_cannot_create_a_channel if {
	anonymous.reason == "channel_create_not_allowed" with input as post("/conversations/channels/support-1/CreateKiteChannelCommand", unbound_token)
}

test_unbound_token_of_a_disabled_widget_is_denied if {
	anonymous.reason == "widget_disabled" with input as post("/conversations/GetTokenCommand", token({"custom:wid": "W-OFF"}))
}

test_unbound_token_of_an_unknown_widget_is_denied if {
	anonymous.reason == "widget_unknown" with input as post("/conversations/GetTokenCommand", token({"custom:wid": "W-GONE"}))
}
