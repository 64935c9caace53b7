package issuer

import (
	"crypto/rand"
	"net/http"
	"strings"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// sessionAnswer is an anonymous session's answer: the XBS anonymous ID token
// and the one channel it is bound to.
type sessionAnswer struct {
	Token     string `json:"token"`
	ChannelID string `json:"channelId"`
}

// widgetSession starts a widget visitor's anonymous session: a fresh Kite
// channel, and a token bound to the widget and that channel. The widget's
// anonymous sessions must be on in the policy's registry.
func (is *Issuer) widgetSession(w http.ResponseWriter, r *http.Request, st *settings) {
	id := r.PathValue("widget_id")
	entry, ok := is.lookup(w, "widgets", id, "widget")
	if !ok {
		return
	}
	if entry["anonymous_sessions"] != true {
		writeError(w, http.StatusForbidden, "widget_disabled", "", "this widget's anonymous sessions are turned off")
		return
	}
	if !is.allow(w, r, st.perClient, "widget:"+id) {
		return
	}
	// Kite channels are fresh for every session; the token's binding is the
	// authority the policy checks, so the id need only be unguessable.
	channel := "kite-" + strings.ToLower(rand.Text())
	is.mintSession(w, st, tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: id, ChannelID: channel})
}

// publicChatSession starts a session from a link into a public chat: a
// token bound to that channel, which must be public in the registry.
func (is *Issuer) publicChatSession(w http.ResponseWriter, r *http.Request, st *settings) {
	id := r.PathValue("channel_id")
	entry, ok := is.lookup(w, "channels", id, "channel")
	if !ok {
		return
	}
	if entry["public"] != true {
		writeError(w, http.StatusForbidden, "channel_not_public", "", "this channel is not public")
		return
	}
	if !is.allow(w, r, st.perClient, "channel:"+id) {
		return
	}
	is.mintSession(w, st, tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: id})
}

// lookup reads data.registry.<collection>.<id> of the serving policy, or
// answers 404 (or 503 without a registry) and returns false.
func (is *Issuer) lookup(w http.ResponseWriter, collection, id, what string) (map[string]any, bool) {
	if is.registry == nil {
		writeError(w, http.StatusServiceUnavailable, "registry_unavailable", "", "no policy registry is loaded")
		return nil, false
	}
	if !config.ValidID(id) {
		writeError(w, http.StatusNotFound, what+"_unknown", "", "no such "+what)
		return nil, false
	}
	v, ok := is.registry.Data("registry", collection, id)
	entry, isObj := v.(map[string]any)
	if !ok || !isObj {
		writeError(w, http.StatusNotFound, what+"_unknown", "", "no such "+what)
		return nil, false
	}
	return entry, true
}

func (is *Issuer) mintSession(w http.ResponseWriter, st *settings, c tokens.XBSClaims) {
	issued, err := st.signer.MintXBSAnonymous(c)
	if err != nil {
		is.mintRefused(w, err, "claim_invalid", "anonymous token", "entry", c.Entry, "widget", c.WidgetID, "channel", c.ChannelID)
		return
	}
	is.logger.Info("minted", "kind", tokens.KindXBSAnonymous, "entry", c.Entry, "widget", c.WidgetID, "channel", c.ChannelID, "subject", issued.Subject)
	writeJSON(w, http.StatusOK, sessionAnswer{Token: issued.Token, ChannelID: c.ChannelID})
}
