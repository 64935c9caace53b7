package workload

import (
	"net/http"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// SessionLength is how many requests one visitor's session sends.
const SessionLength = 20

// channelCommands are the chat commands a widget visitor sends in a
// channel (policies/chat/commands.json, GetTokenCommand aside).
var channelCommands = []string{
	"CreateKiteChannelCommand", "JoinChannelCommand", "MarkReadCommand", "MarkUnreadCommand",
	"TriggerMessageActionCommand", "GetActionTriggerResultCommand", "UploadFileCommand",
	"GetUploadedFileInfoCommand", "GetFilePresignedDownloadUrlCommand",
}

// Session is visitor n's chat session: with its Kite token, the token
// command and every channel command in its own Kite channel; with its
// public-link token, every channel command but the Kite channel's creation
// in the public lobby; and two denials (a command anonymous visitors may not
// send; a link that would create a channel). Each visitor's first use of
// each command is a decision no other visitor shares (the decision depends
// on its token), so a session workload is made of first sightings.
func Session(kite, link string, n int) []Case {
	req := testsupport.CheckRequest
	own := "/conversations/channels/" + testsupport.KiteChannel(n) + "/"
	s := make([]Case, 0, SessionLength)
	s = append(s, Case{Name: "session_kite_get_token", Request: req("POST", "/conversations/GetTokenCommand", kite, ""), Allowed: true})
	for _, c := range channelCommands {
		s = append(s, Case{Name: "session_kite_" + c, Request: req("POST", own+c, kite, ""), Allowed: true})
	}
	for _, c := range channelCommands[1:] {
		s = append(s, Case{Name: "session_link_" + c, Request: req("POST", "/conversations/channels/public-lobby/"+c, link, ""), Allowed: true})
	}
	s = append(s,
		Case{Name: "session_deny_kite_list_channels", Request: req("POST", "/conversations/ListChannelsCommand", kite, ""), Status: http.StatusForbidden},
		Case{Name: "session_deny_link_create_channel", Request: req("POST", "/conversations/channels/public-lobby/CreateKiteChannelCommand", link, ""), Status: http.StatusForbidden},
	)
	return s
}
