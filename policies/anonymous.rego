# Package guestgate.anonymous decides what an XBS anonymous token may do:
# chat only, the commands listed in data.chat.anonymous_commands, in the chat
# context the token was given (a session of guestgate's own) or its visitor
# made (a token of the identity provider: its own Kite channel, public
# channels), and nothing else (no calendar, no channel browsing, no
# directory, no admin). The policy keeps no state: where a request needs a
# visitor's ownership of a channel, it says so (ownership) and guestgate
# applies that against its state store.
#
# The chat API names the channel in the path, so a proxy that forwards no body
# still decides:
#   POST /conversations/{Command}                       data.chat.commands_without_channel
#   POST /conversations/channels/{channelId}/{Command}  every other command
#
# Every chain below names the first thing a request gets wrong, and "allowed"
# on its last line: a check added anywhere before that line applies. (The
# one other "allowed", GetTokenCommand's in unbound_reason, is a request
# that acts in no channel: no check after it concerns one.)
# Each check negates a rule or a comparison ("not widget", "not
# widget.anonymous_sessions == true"), so a claim, a path segment or a
# registry entry that is missing denies rather than allows. (Negating a call
# instead, as in "not x in list" or "not data.registry.widgets[x]", is
# undefined, not true, when x or list is missing: OPA evaluates the call's
# arguments before the "not", and the check would be skipped.)
#
# A value of an unexpected type denies, never is skipped. The claims decide
# only through comparisons with a constant ("custom:entry" == "kite") and
# is_string checks that select a session: a claim of another type selects
# none (entry_unknown). The lists of data are read only when they are arrays,
# so a list written as an object or a string lists nothing. Path segments
# are strings: authz.rego refuses any other path before it asks here.
package guestgate.anonymous

# reason is "allowed", or the first thing this request gets wrong.
reason := "route_not_allowed" if {
	not chat
} else := "method_not_allowed" if {
	not input.attributes.request.http.method == "POST"
} else := "command_not_allowed" if {
	not command_listed
} else := "command_path_mismatch" if {
	not path_fits_command
} else := session_reason

# How the visitor came in decides where it may act. guestgate's own issuer
# says so in custom:entry; a token of the identity provider's own pool has
# only a widget.
#   "kite"         a widget session: the widget and the visitor's own Kite channel
#   "public_link"  a link into a public chat: that channel, no widget
#   "unbound"      the identity provider's token: the widget, no entry, no channel
# Any other combination of claims is not a session this policy knows. The
# three exclude each other by custom:entry, so the first that holds is the
# only one. (guestgate believes custom:entry and custom:channel_id only from
# an issuer configured to assert them, its own session issuer by default: a
# token of any other issuer that carries them is refused, bad_claims, before
# this policy is asked. So "kite" and "public_link" are guestgate's sessions.)
session_reason := kite_reason if {
	input.token.claims["custom:entry"] == "kite"
	is_string(input.token.claims["custom:wid"])
	is_string(input.token.claims["custom:channel_id"])
} else := link_reason if {
	input.token.claims["custom:entry"] == "public_link"
	is_string(input.token.claims["custom:channel_id"])
	not has_wid
} else := unbound_reason if {
	not has_entry
	is_string(input.token.claims["custom:wid"])
	not has_channel
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
command_listed if {
	is_array(data.chat.anonymous_commands)
	chat.command in data.chat.anonymous_commands
}

# A command without a channel (GetTokenCommand) is sent without one; every
# other command names its channel.
path_fits_command if {
	is_array(data.chat.commands_without_channel)
	takes_no_channel := chat.command in data.chat.commands_without_channel
	sent_without_channel := chat.channel == null
	takes_no_channel == sent_without_channel
}

# Whether the token carries each binding claim, whatever its value: a rule
# per claim, each naming its claim (a cached token keeps only the claims the
# policy names, docs/performance.md).
has_entry if _ = input.token.claims["custom:entry"]

has_wid if _ = input.token.claims["custom:wid"]

has_channel if _ = input.token.claims["custom:channel_id"]

# The registry entries (registry/*.json) of the token's widget, of the channel
# the token is bound to, and of the channel the request acts in: which exist,
# which are public, and which channels are assigned to a widget.
widget := data.registry.widgets[input.token.claims["custom:wid"]]

bound_channel := data.registry.channels[input.token.claims["custom:channel_id"]]

path_channel := data.registry.channels[chat.channel]

# A widget session works while its widget has anonymous sessions on, and only
# in the Kite channel it was bound to when it started. Kite channels are fresh
# ids the registry does not list: the binding is the authority.
kite_reason := "widget_unknown" if {
	not widget
} else := "widget_disabled" if {
	not widget.anonymous_sessions == true
} else := "channel_not_bound" if {
	not in_bound_channel
} else := "allowed"

# A link works while its channel is public: making the channel private ends
# every session it started. It acts in that channel only and creates none.
link_reason := "channel_unknown" if {
	not bound_channel
} else := "channel_not_public" if {
	not bound_channel.public == true
} else := "channel_create_not_allowed" if {
	chat.command == "CreateKiteChannelCommand"
} else := "channel_not_bound" if {
	not in_bound_channel
} else := "allowed"

# A token of the identity provider's own pool (unbound: a widget, no
# channel) acts where its visitor went, and what the registry says of the
# channel decides:
#   no channel (GetTokenCommand)            allowed
#   a channel the registry does not list    the visitor's own Kite channel:
#     CreateKiteChannelCommand              allowed, claiming it (ownership)
#     any other command                     allowed, requiring it (ownership)
#   a channel the registry lists
#     CreateKiteChannelCommand              channel_registered
#     public                                allowed (a public link)
#     private, assigned to the widget       allowed, but JoinChannelCommand:
#                                           channel_not_public
#     private, not assigned                 channel_not_assigned
# A widget unknown or with its anonymous sessions off denies before any of
# these, so an owner loses its channel's use when its widget is turned off.
unbound_reason := "widget_unknown" if {
	not widget
} else := "widget_disabled" if {
	not widget.anonymous_sessions == true
} else := "allowed" if {
	# GetTokenCommand acts in no channel: the widget was all to check.
	chat.channel == null
} else := "channel_registry_missing" if {
	# Without the channel registry every channel would look unlisted, and
	# each could be claimed: registry/channels.json missing, or not an
	# object, denies every unbound request made in a channel.
	not channels_registry
} else := listed_channel_reason if {
	channel_listed
} else := "allowed"

# A channel the registry lists is not anyone's own Kite channel: it is
# never created, it is open to every unbound token when public, and to the
# widgets it is assigned to when private.
listed_channel_reason := "channel_registered" if {
	chat.command == "CreateKiteChannelCommand"
} else := "channel_not_assigned" if {
	not path_channel_public
	not path_channel_assigned
} else := "channel_not_public" if {
	chat.command == "JoinChannelCommand"
	not path_channel_public
} else := "allowed"

# ownership is the effect an allowed request needs, which guestgate applies
# against its state store after evaluation and before it answers (see
# policies/README.md, "Ownership"): an unbound token acting in a channel the
# registry does not list acts in its visitor's own Kite channel.
# CreateKiteChannelCommand claims it (the visitor, its issuer, subject and
# widget, becomes its owner, unless another visitor is); every other
# command requires it (the visitor owns it). Undefined for every other
# request, allowed or not.
#
# It holds exactly when unbound_reason allowed on its last line: the request
# is allowed; it has no custom:entry, which kite and public_link sessions
# need, so its session is unbound; it acts in a channel, so not on the
# GetTokenCommand line; and the registry does not list that channel, so not
# through listed_channel_reason. Each condition is defined for every request
# that gets this far (chat made sure of the channel), so the effect cannot
# go missing from the allow it belongs to. The tests hold the two together
# over every session, command and channel.
ownership := {"channel": chat.channel, "need": ownership_need} if own_channel

ownership_need := "claim" if {
	chat.command == "CreateKiteChannelCommand"
} else := "require"

own_channel if {
	reason == "allowed"
	not has_entry
	chat.channel != null
	not channel_listed
}

channels_registry if is_object(data.registry.channels)

# The registry lists the channel, whatever its entry holds (an entry of
# false or null is listed too, and private).
channel_listed if _ = data.registry.channels[chat.channel]

path_channel_public if path_channel.public == true

path_channel_assigned if {
	is_array(widget.channels)
	chat.channel in widget.channels
}

# The request acts in the token's own channel, or in none (GetTokenCommand).
in_bound_channel if chat.channel in {null, input.token.claims["custom:channel_id"]}
