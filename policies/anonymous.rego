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
# Every check below negates a rule ("not widget_enabled"), so a claim, a path
# segment or a registry entry that is missing denies rather than allows.
# (Negating a call instead, as in "not x in list", is undefined, not true, when
# x or list is missing: the check would be skipped.)
package guestgate.anonymous

# reason is "allowed", or the first thing this request gets wrong.
reason := "route_not_allowed" if {
	not command
} else := "method_not_allowed" if {
	not input.attributes.request.http.method == "POST"
} else := "command_not_allowed" if {
	not command_listed
} else := "command_path_mismatch" if {
	not path_fits_command
} else := kite_reason if {
	session == "kite"
} else := link_reason if {
	session == "public_link"
} else := unbound_reason if {
	session == "unbound"
} else := "entry_unknown"

# The command and, for most commands, the channel it acts in.
command := name if ["conversations", name] = input.parsed_path

command := name if ["conversations", "channels", _, name] = input.parsed_path

path_channel := channel if ["conversations", "channels", channel, _] = input.parsed_path

# What anonymous users may do is data: chat/commands.json.
command_listed if command in data.chat.anonymous_commands

# A command without a channel (GetTokenCommand) is sent without one; every
# other command names its channel.
path_fits_command if {
	path_channel
	not command in data.chat.commands_without_channel
}

path_fits_command if {
	not path_channel
	command in data.chat.commands_without_channel
}

widget := input.token.claims["custom:wid"]

bound_channel := input.token.claims["custom:channel_id"]

# How the visitor came in decides where it may act. guestgate's own issuer
# says so in custom:entry; a token of an external user pool has only a widget.
#   "kite"         a widget session: the widget and the visitor's own Kite channel
#   "public_link"  a link into a public chat: that channel, no widget
#   "unbound"      an external pool's token: the widget, no entry, no channel
# Any other combination of claims is not a session this policy knows. The
# three exclude each other (by custom:entry); written as one chain, OPA stops
# at the first that holds.
session := "kite" if {
	input.token.claims["custom:entry"] == "kite"
	is_string(widget)
	is_string(bound_channel)
} else := "public_link" if {
	input.token.claims["custom:entry"] == "public_link"
	is_string(bound_channel)
	not has_claim("custom:wid")
} else := "unbound" if {
	not has_claim("custom:entry")
	is_string(widget)
	not has_claim("custom:channel_id")
}

has_claim(name) if _ = input.token.claims[name]

# A widget session works while its widget has anonymous sessions on, and only
# in the Kite channel it was bound to when it started. Kite channels are fresh
# ids the registry does not list: the binding is the authority.
kite_reason := "widget_unknown" if {
	not widget_known
} else := "widget_disabled" if {
	not widget_enabled
} else := "channel_not_bound" if {
	not in_bound_channel
} else := "allowed"

# A link works while its channel is public: making the channel private ends
# every session it started. It acts in that channel only and creates none.
link_reason := "channel_unknown" if {
	not bound_channel_known
} else := "channel_not_public" if {
	not bound_channel_public
} else := "channel_create_not_allowed" if {
	creating_channel
} else := "channel_not_bound" if {
	not in_bound_channel
} else := "allowed"

# A token of an external pool has no chat of its own: it acts only in the
# channels the registry assigns to its widget, creates none, and joins only
# those assigned channels that are also public.
unbound_reason := "widget_unknown" if {
	not widget_known
} else := "widget_disabled" if {
	not widget_enabled
} else := "allowed" if {
	# GetTokenCommand acts in no channel: the widget was all to check.
	not path_channel
} else := "channel_create_not_allowed" if {
	creating_channel
} else := "channel_unknown" if {
	not path_channel_known
} else := "channel_not_public" if {
	joining_channel
	not path_channel_public
} else := "channel_not_assigned" if {
	not path_channel_assigned
} else := "allowed"

widget_known if data.registry.widgets[widget]

widget_enabled if data.registry.widgets[widget].anonymous_sessions == true

# The registry (registry/*.json) says which channels exist, which are public,
# and which are assigned to a widget.
bound_channel_known if data.registry.channels[bound_channel]

bound_channel_public if data.registry.channels[bound_channel].public == true

path_channel_known if data.registry.channels[path_channel]

path_channel_public if data.registry.channels[path_channel].public == true

path_channel_assigned if path_channel in data.registry.widgets[widget].channels

# The request acts in the token's own channel, or in none (GetTokenCommand).
in_bound_channel if path_channel == bound_channel

in_bound_channel if not path_channel

creating_channel if command == "CreateKiteChannelCommand"

joining_channel if command == "JoinChannelCommand"
