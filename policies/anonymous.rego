# Package guestgate.anonymous decides what an XBS anonymous token may do:
# chat only, the commands listed in data.chat.anonymous_commands, in the chat
# context the token was given, and nothing else (no calendar, no channel
# browsing, no directory, no admin).
#
# The chat API names the channel in the path, so a proxy that forwards no body
# still decides:
#   POST /conversations/{Command}                       data.chat.commands_without_channel
#   POST /conversations/channels/{channelId}/{Command}  every other command
#
# A request is let through only by the first line of a chain, whose checks
# must all hold: a claim, a path segment or a registry entry that is missing
# makes it fail. Every line after it that names a reason negates a rule ("not
# widget", "not widget.anonymous_sessions == true"), so that what is missing
# is named too. (Negating a call instead, as in "not x in list" or "not
# data.registry.widgets[x]", is undefined, not true, when x or list is
# missing: OPA evaluates the call's arguments before the "not", and the line
# would be skipped.)
package guestgate.anonymous

# reason is "allowed", or the first thing this request gets wrong. The first
# line hands a well-formed chat command to its session's checks; the lines
# after it only name the check that failed, in order. (So a request that
# passes evaluates each check once, not once more negated: a check added here
# must be added to the first line, and its test, which expects its reason,
# fails until it is.)
reason := session_reason if {
	input.attributes.request.http.method == "POST"
	command_listed
	path_fits_command
} else := "route_not_allowed" if {
	not chat
} else := "method_not_allowed" if {
	not input.attributes.request.http.method == "POST"
} else := "command_not_allowed" if {
	not command_listed
} else := "command_path_mismatch"

# How the visitor came in decides where it may act. guestgate's own issuer
# says so in custom:entry; a token of an external user pool has only a widget.
#   "kite"         a widget session: the widget and the visitor's own Kite channel
#   "public_link"  a link into a public chat: that channel, no widget
#   "unbound"      an external pool's token: the widget, no entry, no channel
# Any other combination of claims is not a session this policy knows. The
# three exclude each other by custom:entry, so the first that holds is the
# only one.
session_reason := kite_reason if {
	input.token.claims["custom:entry"] == "kite"
	is_string(input.token.claims["custom:wid"])
	is_string(input.token.claims["custom:channel_id"])
} else := link_reason if {
	input.token.claims["custom:entry"] == "public_link"
	is_string(input.token.claims["custom:channel_id"])
	not has_claim("custom:wid")
} else := unbound_reason if {
	not has_claim("custom:entry")
	is_string(input.token.claims["custom:wid"])
	not has_claim("custom:channel_id")
} else := "entry_unknown"

# The command the path names and the channel it acts in (null for a command
# sent without one): /conversations/channels/{channelId}/{Command} or
# /conversations/{Command}. One rule for both: each rule OPA evaluates costs
# more than the lookups inside it. (Segments are read by position: matching
# the path against an array pattern costs several times more, as OPA's rule
# index copies the array at every step.)
chat := {"command": input.parsed_path[3], "channel": input.parsed_path[2]} if {
	input.parsed_path[0] == "conversations"
	input.parsed_path[1] == "channels"
	count(input.parsed_path) == 4
} else := {"command": input.parsed_path[1], "channel": null} if {
	input.parsed_path[0] == "conversations"
	count(input.parsed_path) == 2
}

# What anonymous users may do is data: chat/commands.json.
command_listed if chat.command in data.chat.anonymous_commands

# A command without a channel (GetTokenCommand) is sent without one; every
# other command names its channel.
path_fits_command if {
	takes_no_channel := chat.command in data.chat.commands_without_channel
	sent_without_channel := chat.channel == null
	takes_no_channel == sent_without_channel
}

has_claim(name) if _ = input.token.claims[name]

# The registry entries (registry/*.json) of the token's widget, of the channel
# the token is bound to, and of the channel the request acts in: which exist,
# which are public, and which channels are assigned to a widget.
widget := data.registry.widgets[input.token.claims["custom:wid"]]

bound_channel := data.registry.channels[input.token.claims["custom:channel_id"]]

path_channel := data.registry.channels[chat.channel]

# A widget session works while its widget has anonymous sessions on, and only
# in the Kite channel it was bound to when it started. Kite channels are fresh
# ids the registry does not list: the binding is the authority. (As in
# reason, the first line lets through what passes every check; the others
# name the first that failed.)
kite_reason := "allowed" if {
	widget.anonymous_sessions == true
	in_bound_channel
} else := "widget_unknown" if {
	not widget
} else := "widget_disabled" if {
	not widget.anonymous_sessions == true
} else := "channel_not_bound"

# A link works while its channel is public: making the channel private ends
# every session it started. It acts in that channel only and creates none.
link_reason := "allowed" if {
	bound_channel.public == true
	chat.command != "CreateKiteChannelCommand"
	in_bound_channel
} else := "channel_unknown" if {
	not bound_channel
} else := "channel_not_public" if {
	not bound_channel.public == true
} else := "channel_create_not_allowed" if {
	chat.command == "CreateKiteChannelCommand"
} else := "channel_not_bound"

# A token of an external pool has no chat of its own: it acts only in the
# channels the registry assigns to its widget, creates none, and joins only
# those assigned channels that are also public.
unbound_reason := "allowed" if {
	widget.anonymous_sessions == true

	# GetTokenCommand acts in no channel: the widget was all to check.
	chat.channel == null
} else := "allowed" if {
	widget.anonymous_sessions == true
	chat.command != "CreateKiteChannelCommand"
	path_channel_joinable
	path_channel_assigned
} else := "widget_unknown" if {
	not widget
} else := "widget_disabled" if {
	not widget.anonymous_sessions == true
} else := "channel_create_not_allowed" if {
	chat.command == "CreateKiteChannelCommand"
} else := "channel_unknown" if {
	not path_channel
} else := "channel_not_public" if {
	chat.command == "JoinChannelCommand"
	not path_channel.public == true
} else := "channel_not_assigned"

# A channel the registry knows, and public if the request joins it.
path_channel_joinable if {
	path_channel
	chat.command != "JoinChannelCommand"
}

path_channel_joinable if path_channel.public == true

path_channel_assigned if chat.channel in widget.channels

# The request acts in the token's own channel, or in none (GetTokenCommand).
in_bound_channel if chat.channel in {null, input.token.claims["custom:channel_id"]}
