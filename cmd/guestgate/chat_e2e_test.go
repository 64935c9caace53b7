package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// The chat commands an anonymous visitor may send (policies/chat/commands.json).
var anonymousCommands = []string{
	"GetTokenCommand", "CreateKiteChannelCommand", "JoinChannelCommand", "MarkReadCommand",
	"MarkUnreadCommand", "TriggerMessageActionCommand", "GetActionTriggerResultCommand",
	"UploadFileCommand", "GetUploadedFileInfoCommand", "GetFilePresignedDownloadUrlCommand",
}

// commandPath is where the chat API takes a command: in the channel, or
// without one for GetTokenCommand.
func commandPath(channel, command string) string {
	if command == "GetTokenCommand" {
		return "/conversations/GetTokenCommand"
	}
	return "/conversations/channels/" + channel + "/" + command
}

// e2eCase is one request through the real Check and what must come of it.
type e2eCase struct {
	name string
	call httpCall
	// want: allowed (200), or the status, precise reason and token_error
	// of a denial.
	allow      bool
	status     int
	reason     string
	tokenError string
	// kind is the kind the verified token reached the policy as ("" none).
	kind string
	// upstream are identity headers an allow must send upstream, exactly;
	// absent lists headers it must not send.
	upstream map[string]string
	absent   []string
}

// TestShippedPolicyThroughTheRealCheck drives the shipped policies/ through
// the running sidecar's gRPC Check with real tokens of every kind, through
// every rule of the policy, allowed and denied, so the Rego and the Go side
// (verification, input, decision, response) are seen to agree.
func TestShippedPolicyThroughTheRealCheck(t *testing.T) {
	e := startE2E(t, nil)

	// XBS anonymous: a widget session, a public-chat link, an external
	// pool's unbound token, and a signed-in (regular) user of the pool.
	kite := e.kite("W-DEMO", "kite-chan-1")
	kiteOff := e.kite("W-OFF", "kite-chan-2")
	kiteUnknown := e.kite("W-NOPE", "kite-chan-3")
	link := e.link("public-lobby")
	linkPrivate := e.link("support-1")
	linkUnknown := e.link("no-such-channel")
	unbound := e.signXBS(xbsClaims("W-DEMO"))
	unboundOff := e.signXBS(xbsClaims("W-OFF"))
	unboundUnknown := e.signXBS(xbsClaims("W-NOPE"))
	regularClaims := xbsClaims("")
	delete(regularClaims, "custom:authorization_type")
	delete(regularClaims, "custom:wid")
	regularClaims["name"], regularClaims["email"] = "Grace Hopper", "grace@example.com"
	regular := e.signXBS(regularClaims)

	// Guests: the partner's guest token, and the access token the login
	// exchange gives for it.
	guest := e.guest("ada-1", "Ada", e.guestKey)
	guestDocs := partnerDocsGuestToken(e.guestKey, "ada-1", "Ada Lovelace")
	access := e.access("ada-1", "Ada", e.guestKey)
	me := tokens.GuestPersonID(devGuestIssuer, "ada-1")
	otherGuest := tokens.GuestPersonID(devGuestIssuer, "bob-2")
	const regularPerson = "9f2d4c1a-5b6e-4f70-8a1b-2c3d4e5f6a7b"

	// Secure anonymous.
	sat := e.sat("", "launchpads/lp-1")
	satAdmin := e.sat(tokens.RoleAdmin, "launchpads/lp-1")
	satOrg := e.sat("", "orgs/org-1")

	// Bad tokens of each kind.
	past := e.pastSigner(7 * time.Hour)
	expiredKite := e.issued(past.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: "kite-chan-1"}))
	expiredSAT := e.issued(past.MintSAT(tokens.SATClaims{AccountID: "acct-1", ProviderID: "prov-1", Scope: "launchpads/lp-1"}))
	expiredAccess := e.issued(past.MintAccess(tokens.AccessClaims{GuestIssuer: devGuestIssuer, GuestSubject: "ada-1", Generation: tokens.SecretGeneration(e.guestKey)}))
	expiredGuest, err := tokens.MintGuest(e.guestKey, devGuestIssuer, "ada-1", "Ada", time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	strangerJWK, err := jwk.FromRaw(stranger)
	if err != nil {
		t.Fatal(err)
	}
	forgedXBS := e.sign(tokens.SigningKey{ID: e.xbsKey.ID, Algorithm: "RS256", Private: strangerJWK}, "", xbsClaims("W-DEMO"))
	guestUndecoded := partnerDocsGuestToken([]byte(strings.TrimSpace(readText(t, filepath.Join(e.dir, "dev", "secrets", "guest-dev.b64")))), "ada-1", "Ada")
	forgedSAT := swapSignature(sat, e.sat("", "launchpads/lp-2"))
	forgedAccess := swapSignature(access, e.access("bob-2", "Bob", e.guestKey))
	foreignXBS := xbsClaims("W-DEMO")
	foreignXBS["iss"] = "https://cognito-idp.attacker.invalid/pool"
	untrustedXBS := e.signXBS(foreignXBS)
	untrustedGuest := mintGuestFor(t, e.guestKey, "partner-nobody-trusts", "ada-1")
	satAsAccess := e.sign(e.satKey, "at+jwt", claimsOf(t, sat))
	accessWithSATKey := e.sign(e.satKey, "at+jwt", claimsOf(t, access))
	partner2 := readText(t, filepath.Join(e.dir, "dev", "secrets", "guest-partner2-dev.b64"))
	partner2Key, err := tokens.DecodeGuestSecret(strings.TrimSpace(partner2))
	if err != nil {
		t.Fatal(err)
	}
	accessOtherGeneration := e.access("ada-1", "Ada", partner2Key)

	xbsSubject := func(raw string) string { return devXBSIssuer + "|" + claimsOf(t, raw)["sub"].(string) }
	post := func(path, token string) httpCall { return httpCall{method: "POST", path: path, token: token} }
	get := func(path, token string) httpCall { return httpCall{method: "GET", path: path, token: token} }
	postJSON := func(path, token, body string) httpCall {
		return httpCall{method: "POST", path: path, token: token, body: body}
	}

	var cases []e2eCase

	// XBS anonymous, widget session: every allowed command, in its own
	// Kite channel, with its identity upstream.
	for _, cmd := range anonymousCommands {
		cases = append(cases, e2eCase{name: "kite " + cmd, call: post(commandPath("kite-chan-1", cmd), kite), allow: true, kind: "xbs_anonymous",
			upstream: map[string]string{
				"x-guestgate-kind": "xbs_anonymous", "x-guestgate-issuer": devXBSIssuer, "x-guestgate-subject": xbsSubject(kite),
				"x-guestgate-name": "guest", "x-guestgate-widget": "W-DEMO", "x-guestgate-channel": "kite-chan-1",
			}, absent: []string{"x-guestgate-scope"}})
	}
	deny := func(name string, call httpCall, status int, reason, kind string) e2eCase {
		return e2eCase{name: name, call: call, status: status, reason: reason, kind: kind}
	}
	forbid := func(name string, call httpCall, reason, kind string) e2eCase {
		return deny(name, call, 403, reason, kind)
	}
	const xbs = "xbs_anonymous"
	cases = append(cases,
		forbid("kite command not on the list", post(commandPath("kite-chan-1", "DeleteChannelCommand"), kite), "command_not_allowed", xbs),
		forbid("kite admin command", post(commandPath("kite-chan-1", "SetChannelAdminCommand"), kite), "command_not_allowed", xbs),
		forbid("kite channel browsing", post("/conversations/BrowsePublicChannelsCommand", kite), "command_not_allowed", xbs),
		forbid("kite channel listing with GET", get("/conversations/channels", kite), "method_not_allowed", xbs),
		forbid("kite GET instead of POST", get(commandPath("kite-chan-1", "MarkReadCommand"), kite), "method_not_allowed", xbs),
		forbid("kite PUT instead of POST", httpCall{method: "PUT", path: "/conversations/GetTokenCommand", token: kite}, "method_not_allowed", xbs),
		forbid("kite calendar", get("/v1/calendar/events", kite), "route_not_allowed", xbs),
		forbid("kite calendar command", post("/calendar/CreateEventCommand", kite), "route_not_allowed", xbs),
		forbid("kite directory", get("/v1/people", kite), "route_not_allowed", xbs),
		forbid("kite admin route", post("/admin/widgets/W-DEMO", kite), "route_not_allowed", xbs),
		forbid("kite messages API", postJSON("/v1/messages", kite, `{"text":"hi"}`), "route_not_allowed", xbs),
		forbid("kite GetTokenCommand with a channel", post("/conversations/channels/kite-chan-1/GetTokenCommand", kite), "command_path_mismatch", xbs),
		forbid("kite MarkReadCommand without a channel", post("/conversations/MarkReadCommand", kite), "command_path_mismatch", xbs),
		forbid("kite in another channel", post(commandPath("support-1", "MarkReadCommand"), kite), "channel_not_bound", xbs),
		forbid("kite joining a public channel", post(commandPath("public-lobby", "JoinChannelCommand"), kite), "channel_not_bound", xbs),
		forbid("kite of a widget with sessions off", post(commandPath("kite-chan-2", "MarkReadCommand"), kiteOff), "widget_disabled", xbs),
		forbid("kite of an unknown widget", post(commandPath("kite-chan-3", "MarkReadCommand"), kiteUnknown), "widget_unknown", xbs),
	)

	// XBS anonymous, public-chat link: its public channel only.
	linkHeaders := map[string]string{
		"x-guestgate-kind": xbs, "x-guestgate-issuer": devXBSIssuer, "x-guestgate-subject": xbsSubject(link),
		"x-guestgate-name": "guest", "x-guestgate-channel": "public-lobby",
	}
	for _, cmd := range []string{"GetTokenCommand", "JoinChannelCommand", "MarkReadCommand", "UploadFileCommand"} {
		cases = append(cases, e2eCase{name: "link " + cmd, call: post(commandPath("public-lobby", cmd), link), allow: true, kind: xbs,
			upstream: linkHeaders, absent: []string{"x-guestgate-widget"}})
	}
	cases = append(cases,
		forbid("link creating a channel", post(commandPath("public-lobby", "CreateKiteChannelCommand"), link), "channel_create_not_allowed", xbs),
		forbid("link in another channel", post(commandPath("support-1", "MarkReadCommand"), link), "channel_not_bound", xbs),
		forbid("link into a private channel", post(commandPath("support-1", "MarkReadCommand"), linkPrivate), "channel_not_public", xbs),
		forbid("link into an unknown channel", post(commandPath("no-such-channel", "MarkReadCommand"), linkUnknown), "channel_unknown", xbs),
		forbid("link command not on the list", post(commandPath("public-lobby", "PostMessageCommand"), link), "command_not_allowed", xbs),
		forbid("link GET", get(commandPath("public-lobby", "MarkReadCommand"), link), "method_not_allowed", xbs),
	)

	// XBS anonymous without a binding (the identity provider's own token):
	// public channels, the channels the registry assigns to its widget.
	unboundHeaders := map[string]string{
		"x-guestgate-kind": xbs, "x-guestgate-issuer": devXBSIssuer, "x-guestgate-subject": xbsSubject(unbound),
		"x-guestgate-name": "guest", "x-guestgate-widget": "W-DEMO",
	}
	cases = append(cases,
		e2eCase{name: "unbound GetTokenCommand", call: post("/conversations/GetTokenCommand", unbound), allow: true, kind: xbs,
			upstream: unboundHeaders, absent: []string{"x-guestgate-channel"}},
		e2eCase{name: "unbound in an assigned channel", call: post(commandPath("support-1", "MarkReadCommand"), unbound), allow: true, kind: xbs,
			upstream: unboundHeaders},
		forbid("unbound joining an assigned private channel", post(commandPath("support-1", "JoinChannelCommand"), unbound), "channel_not_public", xbs),
		e2eCase{name: "unbound in a public channel not assigned", call: post(commandPath("public-lobby", "MarkReadCommand"), unbound), allow: true, kind: xbs,
			upstream: unboundHeaders},
		e2eCase{name: "unbound joining a public channel not assigned", call: post(commandPath("public-lobby", "JoinChannelCommand"), unbound), allow: true, kind: xbs,
			upstream: unboundHeaders},
		forbid("unbound in a private channel not assigned", post(commandPath("team-private", "MarkReadCommand"), unbound), "channel_not_assigned", xbs),
		forbid("unbound creating a channel", post(commandPath("support-1", "CreateKiteChannelCommand"), unbound), "channel_registered", xbs),
		// The policy allows it with an ownership requirement, and nobody
		// owns the channel (xbs_e2e_test.go runs the whole flow).
		forbid("unbound in an unknown channel", post(commandPath("no-such-channel", "MarkReadCommand"), unbound), "channel_not_owned", xbs),
		forbid("unbound of a widget with sessions off", post("/conversations/GetTokenCommand", unboundOff), "widget_disabled", xbs),
		forbid("unbound of an unknown widget", post("/conversations/GetTokenCommand", unboundUnknown), "widget_unknown", xbs),
		forbid("unbound calendar", get("/v1/calendar/events", unbound), "route_not_allowed", xbs),
	)

	// Regular users of the opted-in pool: not restricted by this policy.
	regularHeaders := map[string]string{
		"x-guestgate-kind": "regular", "x-guestgate-issuer": devXBSIssuer, "x-guestgate-subject": xbsSubject(regular),
		"x-guestgate-name": "Grace Hopper",
	}
	for _, c := range []httpCall{get("/v1/calendar/events", regular), post(commandPath("team-private", "DeleteChannelCommand"), regular),
		get("/conversations/channels", regular), httpCall{method: "DELETE", path: "/admin/widgets/W-DEMO", token: regular}} {
		cases = append(cases, e2eCase{name: "regular " + c.method + " " + c.path, call: c, allow: true, kind: "regular",
			upstream: regularHeaders, absent: []string{"x-guestgate-widget", "x-guestgate-channel"}})
	}

	// Guest token: the login exchange only.
	guestHeaders := map[string]string{
		"x-guestgate-kind": "guest", "x-guestgate-issuer": devGuestIssuer, "x-guestgate-subject": devGuestIssuer + "|ada-1", "x-guestgate-name": "Ada",
	}
	cases = append(cases,
		e2eCase{name: "guest at the login exchange", call: post("/v1/jwt/login", guest), allow: true, kind: "guest", upstream: guestHeaders},
		e2eCase{name: "guest built as the partner docs show", call: post("/v1/jwt/login", guestDocs), allow: true, kind: "guest",
			upstream: map[string]string{"x-guestgate-subject": devGuestIssuer + "|ada-1", "x-guestgate-name": "Ada Lovelace"}},
		forbid("guest GET on the login route", get("/v1/jwt/login", guest), "guest_token_login_only", "guest"),
		forbid("guest sending a message", postJSON("/v1/messages", guest, `{"toPersonId":"`+regularPerson+`","text":"hi"}`), "guest_token_login_only", "guest"),
		forbid("guest reading people", get("/v1/people/"+regularPerson, guest), "guest_token_login_only", "guest"),
		forbid("guest in the chat API", post("/conversations/GetTokenCommand", guest), "guest_token_login_only", "guest"),
	)

	// Access token: messaging, calling, people; never another guest.
	accessHeaders := map[string]string{
		"x-guestgate-kind": "access", "x-guestgate-issuer": devAccessIssuer, "x-guestgate-subject": devAccessIssuer + "|" + me,
		"x-guestgate-name": "Ada", "x-guestgate-scope": tokens.AccessScope,
	}
	allowAccess := func(name string, c httpCall) e2eCase {
		return e2eCase{name: name, call: c, allow: true, kind: "access", upstream: accessHeaders, absent: []string{"x-guestgate-widget"}}
	}
	const acc = "access"
	cases = append(cases,
		allowAccess("access messaging a regular user", postJSON("/v1/messages", access, `{"toPersonId":"`+regularPerson+`","text":"hi"}`)),
		allowAccess("access messaging a room", postJSON("/v1/messages", access, `{"roomId":"room-1","text":"hi"}`)),
		allowAccess("access listing a direct chat", get("/v1/messages?personId="+regularPerson, access)),
		allowAccess("access adding a regular user", postJSON("/v1/memberships", access, `{"roomId":"room-1","personId":"`+regularPerson+`"}`)),
		allowAccess("access calling a regular user", postJSON("/v1/calls", access, `{"toPersonId":"`+regularPerson+`"}`)),
		allowAccess("access looking up a regular user", get("/v1/people/"+regularPerson, access)),
		allowAccess("access looking up itself", get("/v1/people/"+me, access)),
		allowAccess("access deleting a message", httpCall{method: "DELETE", path: "/v1/messages/msg-1", token: access}),
		forbid("access messaging another guest", postJSON("/v1/messages", access, `{"toPersonId":"`+otherGuest+`","text":"hi"}`), "guest_to_guest", acc),
		forbid("access messaging another guest, field in another case", postJSON("/v1/messages", access, `{"TOPERSONID":"`+strings.ToUpper(otherGuest)+`"}`), "guest_to_guest", acc),
		forbid("access adding another guest", postJSON("/v1/memberships", access, `{"roomId":"room-1","personId":"`+otherGuest+`"}`), "guest_to_guest", acc),
		forbid("access calling another guest", postJSON("/v1/calls", access, `{"toPersonId":"`+otherGuest+`"}`), "guest_to_guest", acc),
		forbid("access looking up another guest by path", get("/v1/people/"+otherGuest, access), "guest_to_guest", acc),
		forbid("access looking up another guest by query", get("/v1/people?id="+regularPerson+","+otherGuest, access), "guest_to_guest", acc),
		forbid("access listing a direct chat with another guest", get("/v1/messages?personId="+otherGuest, access), "guest_to_guest", acc),
		forbid("access POST whose body the proxy did not forward", httpCall{method: "POST", path: "/v1/messages", token: access, noBody: true}, "body_required", acc),
		forbid("access POST without a body", post("/v1/calls", access), "body_required", acc),
		forbid("access creating a person", postJSON("/v1/people", access, `{"displayName":"x"}`), "method_not_allowed", acc),
		forbid("access at the login exchange", post("/v1/jwt/login", access), "route_not_allowed", acc),
		forbid("access in the chat API", post("/conversations/GetTokenCommand", access), "route_not_allowed", acc),
		forbid("access calendar", get("/v1/calendar/events", access), "route_not_allowed", acc),
		forbid("access launchpad", get("/v1/launchpads/lp-1", access), "route_not_allowed", acc),
	)

	// Secure anonymous: its launchpad and nothing else.
	satHeaders := map[string]string{
		"x-guestgate-kind": "secure_anonymous", "x-guestgate-issuer": devSATIssuer,
		"x-guestgate-subject": devSATIssuer + "|" + claimsOf(t, sat)["sub"].(string), "x-guestgate-scope": "launchpads/lp-1",
	}
	const sa = "secure_anonymous"
	cases = append(cases,
		e2eCase{name: "SAT at its launchpad", call: get("/v1/launchpads/lp-1", sat), allow: true, kind: sa, upstream: satHeaders, absent: []string{"x-guestgate-name"}},
		e2eCase{name: "SAT below its launchpad", call: post("/v1/launchpads/lp-1/sessions", sat), allow: true, kind: sa, upstream: satHeaders},
		forbid("SAT at another launchpad", get("/v1/launchpads/lp-2", sat), "scope_mismatch", sa),
		forbid("SAT at the launchpad list", get("/v1/launchpads", sat), "scope_mismatch", sa),
		forbid("SAT messaging", postJSON("/v1/messages", sat, `{"toPersonId":"`+regularPerson+`"}`), "scope_mismatch", sa),
		forbid("SAT in the chat API", post("/conversations/GetTokenCommand", sat), "scope_mismatch", sa),
		forbid("SAT with the administrator role", get("/v1/launchpads/lp-1", satAdmin), "role_not_allowed", sa),
		forbid("SAT scoped to something not a launchpad", get("/v1/launchpads/lp-1", satOrg), "scope_invalid", sa),
	)

	// No credential, or a bad one of each kind: 401 with the code.
	invalid := func(name, token, code string) e2eCase {
		return e2eCase{name: name, call: post("/conversations/GetTokenCommand", token), status: 401, reason: "invalid_token", tokenError: code}
	}
	cases = append(cases,
		e2eCase{name: "no credential", call: post("/conversations/GetTokenCommand", ""), status: 401, reason: "missing_token", tokenError: "missing"},
		e2eCase{name: "credential with another scheme", call: httpCall{method: "POST", path: "/conversations/GetTokenCommand",
			headers: map[string]string{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b"))}}, status: 401, reason: "missing_token", tokenError: "missing"},
		invalid("not a token", "not-a-token", tokens.CodeMalformed),
		invalid("oversize token", strings.Repeat("a", 9000), tokens.CodeTooLarge),
		invalid("kite expired", expiredKite, tokens.CodeExpired),
		invalid("guest expired", expiredGuest, tokens.CodeExpired),
		invalid("SAT expired", expiredSAT, tokens.CodeExpired),
		invalid("access expired", expiredAccess, tokens.CodeExpired),
		invalid("XBS signed by another key under the pool's kid", forgedXBS, tokens.CodeBadSignature),
		invalid("guest signed with the undecoded secret", guestUndecoded, tokens.CodeBadSignature),
		invalid("SAT with another token's signature", forgedSAT, tokens.CodeBadSignature),
		invalid("access with another token's signature", forgedAccess, tokens.CodeBadSignature),
		invalid("XBS of a pool nobody trusts", untrustedXBS, tokens.CodeUntrustedIssuer),
		invalid("guest of an issuer nobody trusts", untrustedGuest, tokens.CodeUntrustedIssuer),
		invalid("SAT dressed as an access token (typ at+jwt)", satAsAccess, tokens.CodeBadHeader),
		invalid("access token signed with the SAT key", accessWithSATKey, tokens.CodeUnknownKey),
		invalid("access of another guest secret's generation", accessOtherGeneration, tokens.CodeRevoked),
	)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := e.check(tc.call)
			if a.allowed != tc.allow {
				t.Fatalf("allowed=%v (status %d, reason %s, token_error %q), want allowed=%v reason %s",
					a.allowed, a.status, a.reason, a.tokenError, tc.allow, tc.reason)
			}
			if a.kind != tc.kind {
				t.Errorf("the token reached the policy as kind %q, want %q (token_error %q)", a.kind, tc.kind, a.tokenError)
			}
			if tc.allow {
				if a.reason != "allowed" {
					t.Errorf("reason %q on an allow", a.reason)
				}
				for k, v := range tc.upstream {
					if got, ok := a.headers[k]; !ok || got != v {
						t.Errorf("upstream %s = %q (present %v), want %q", k, got, ok, v)
					}
				}
				for _, k := range tc.absent {
					if v, ok := a.headers[k]; ok {
						t.Errorf("upstream %s = %q, want none", k, v)
					}
				}
				if tc.call.token != "" && !slices.Contains(a.removed, "authorization") {
					t.Errorf("the credential goes upstream: headers removed %v", a.removed)
				}
				return
			}
			if a.status != tc.status || a.reason != tc.reason || a.tokenError != tc.tokenError {
				t.Fatalf("denied %d %s (token_error %q), want %d %s (token_error %q)",
					a.status, a.reason, a.tokenError, tc.status, tc.reason, tc.tokenError)
			}
			body := map[string]string{}
			if err := json.Unmarshal([]byte(a.resp.GetDeniedResponse().GetBody()), &body); err != nil {
				t.Fatalf("deny body: %v", err)
			}
			// The development setup shows clients the precise reason.
			if body["reason"] != tc.reason || body["request_id"] == "" {
				t.Errorf("deny body %v", body)
			}
			if tc.status == 401 {
				want := `Bearer error="invalid_token"`
				if tc.tokenError == "missing" {
					want = "Bearer"
				}
				if got := a.headers["www-authenticate"]; got != want {
					t.Errorf("www-authenticate %q, want %q", got, want)
				}
			}
		})
	}

	// No token, nor the guest secret, ever reaches a log line.
	logs := e.logs.String()
	for _, tc := range cases {
		if tok := tc.call.token; len(tok) > 16 && strings.Contains(logs, tok[len(tok)-16:]) {
			t.Errorf("the log holds the token of %q", tc.name)
		}
	}
	if strings.Contains(logs, base64.StdEncoding.EncodeToString(e.guestKey)) {
		t.Error("the log holds the guest secret")
	}

	// Every allowed command was tried through the Check, and nothing else
	// is on the shipped list.
	var shipped struct {
		AnonymousCommands []string `json:"anonymous_commands"`
	}
	if err := json.Unmarshal([]byte(readText(t, filepath.Join(e.policyDir, "chat", "commands.json"))), &shipped); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(slices.Sorted(slices.Values(shipped.AnonymousCommands)), slices.Sorted(slices.Values(anonymousCommands))) {
		t.Errorf("policies/chat/commands.json lists %v; this test tries %v", shipped.AnonymousCommands, anonymousCommands)
	}
}

// TestForgedIdentityHeadersNeverReachUpstream: a client's own
// x-guestgate-* headers are overwritten or removed on an allow.
func TestForgedIdentityHeadersNeverReachUpstream(t *testing.T) {
	e := startE2E(t, nil)
	a := e.check(httpCall{method: "POST", path: "/conversations/GetTokenCommand", token: e.link("public-lobby"), headers: map[string]string{
		"x-guestgate-subject": "admin", "x-guestgate-kind": "regular", "x-guestgate-scope": "everything",
	}})
	if !a.allowed {
		t.Fatalf("denied: %s", a.reason)
	}
	if a.headers["x-guestgate-kind"] != "xbs_anonymous" || strings.HasSuffix(a.headers["x-guestgate-subject"], "|admin") {
		t.Errorf("upstream identity %v", a.headers)
	}
	if _, set := a.headers["x-guestgate-scope"]; set || !slices.Contains(a.removed, "x-guestgate-scope") {
		t.Errorf("a forged x-guestgate-scope is not removed: set %v, removed %v", set, a.removed)
	}
}

// echoPolicy allows everything and sends input.token and
// input.token_error upstream as JSON, so a test sees exactly what the
// policy was given.
const echoPolicy = `package guestgate.e2e

decision := {"allowed": true, "headers": {
	"x-e2e-token": json.marshal(input.token),
	"x-e2e-token-error": json.marshal(input.token_error),
}}
`

// TestEveryKindReachesThePolicyAsItsToken runs a sidecar whose decision
// query is a policy that echoes its input, and checks input.token for a
// real token of every kind: kind, issuer, subject, name, email,
// expires_at and every claim, exactly as signed.
func TestEveryKindReachesThePolicyAsItsToken(t *testing.T) {
	e := startE2EWith(t, map[string]string{"dir: ../policies": "dir: ../policies\n  query: data.guestgate.e2e.decision"},
		map[string]string{"e2e/echo.rego": echoPolicy})
	regularClaims := xbsClaims("")
	delete(regularClaims, "custom:authorization_type")
	delete(regularClaims, "custom:wid")
	regularClaims["name"], regularClaims["email"] = "Grace Hopper", "grace@example.com"
	tests := []struct {
		name, raw, kind, issuer, display, email string
	}{
		{"widget session", e.kite("W-DEMO", "kite-chan-1"), "xbs_anonymous", devXBSIssuer, "guest", "anonymous-w-demo@anonymous.dev.guestgate.invalid"},
		{"public-chat link", e.link("public-lobby"), "xbs_anonymous", devXBSIssuer, "guest", "anonymous-public-lobby@anonymous.dev.guestgate.invalid"},
		{"external pool", e.signXBS(xbsClaims("W-DEMO")), "xbs_anonymous", devXBSIssuer, "guest", "anonymous-w-demo@anonymous.dev.guestgate.invalid"},
		{"regular", e.signXBS(regularClaims), "regular", devXBSIssuer, "Grace Hopper", "grace@example.com"},
		{"guest", e.guest("ada-1", "Ada", e.guestKey), "guest", devGuestIssuer, "Ada", ""},
		{"access", e.access("ada-1", "Ada", e.guestKey), "access", devAccessIssuer, "Ada", ""},
		{"secure anonymous", e.sat("", "launchpads/lp-1"), "secure_anonymous", devSATIssuer, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.check(httpCall{method: "GET", path: "/anything", token: tt.raw})
			if !a.allowed {
				t.Fatalf("the echo policy denied: %s %q", a.reason, a.tokenError)
			}
			var got struct {
				Kind, Issuer, Subject, Name, Email string
				ExpiresAt                          float64 `json:"expires_at"`
				Claims                             map[string]any
			}
			if err := json.Unmarshal([]byte(a.headers["x-e2e-token"]), &got); err != nil {
				t.Fatalf("input.token %q: %v", a.headers["x-e2e-token"], err)
			}
			claims := claimsOf(t, tt.raw)
			if got.Kind != tt.kind || got.Issuer != tt.issuer || got.Subject != claims["sub"] ||
				got.Name != tt.display || got.Email != tt.email || got.ExpiresAt != claims["exp"] {
				t.Errorf("input.token = {%s %s %s %q %q %v}, want {%s %s %v %q %q %v}", got.Kind, got.Issuer, got.Subject, got.Name, got.Email, got.ExpiresAt,
					tt.kind, tt.issuer, claims["sub"], tt.display, tt.email, claims["exp"])
			}
			if !reflect.DeepEqual(got.Claims, claims) {
				t.Errorf("input.token.claims = %v, want the token's claims %v", got.Claims, claims)
			}
			if a.headers["x-e2e-token-error"] != "null" {
				t.Errorf("input.token_error = %s beside a verified token", a.headers["x-e2e-token-error"])
			}
		})
	}
	// And no token: input.token is null, token_error "missing"; a bad one
	// carries its code.
	for raw, want := range map[string]string{"": `"missing"`, "not-a-token": `"malformed"`} {
		a := e.check(httpCall{method: "GET", path: "/anything", token: raw})
		if a.headers["x-e2e-token"] != "null" || a.headers["x-e2e-token-error"] != want {
			t.Errorf("token %q: input.token %s, token_error %s; want null, %s", raw, a.headers["x-e2e-token"], a.headers["x-e2e-token-error"], want)
		}
	}
}

// TestLinkTokenInTheQueryIsFoundAndNotForwarded: where the config says a
// route family carries its token in a query parameter (public-chat links),
// the token is taken from there, reaches the policy as its kind, and is
// removed from what goes upstream; other routes keep the header.
func TestLinkTokenInTheQueryIsFoundAndNotForwarded(t *testing.T) {
	e := startE2E(t, map[string]string{"decision_log:": "check:\n  credentials:\n" +
		"    - {path_prefix: /conversations/channels/public-lobby/, query: access_token}\n" +
		"    - {header: authorization}\n\ndecision_log:"})
	link := e.link("public-lobby")
	inQuery := e.check(httpCall{method: "POST", path: commandPath("public-lobby", "MarkReadCommand") + "?access_token=" + link + "&x=1"})
	if !inQuery.allowed || inQuery.kind != "xbs_anonymous" || inQuery.headers["x-guestgate-channel"] != "public-lobby" {
		t.Fatalf("link token in the query: allowed=%v %s kind %q headers %v", inQuery.allowed, inQuery.reason, inQuery.kind, inQuery.headers)
	}
	if !slices.Equal(inQuery.removedQ, []string{"access_token"}) {
		t.Errorf("query parameters removed upstream: %v, want [access_token]", inQuery.removedQ)
	}
	inHeader := e.check(httpCall{method: "POST", path: commandPath("public-lobby", "MarkReadCommand"), token: link})
	if inHeader.allowed || inHeader.status != 401 || inHeader.tokenError != "missing" {
		t.Errorf("link token in the header where the query carries it: allowed=%v %d %q", inHeader.allowed, inHeader.status, inHeader.tokenError)
	}
	kite := e.check(httpCall{method: "POST", path: commandPath("kite-chan-1", "MarkReadCommand"), token: e.kite("W-DEMO", "kite-chan-1")})
	if !kite.allowed || !slices.Contains(kite.removed, "authorization") {
		t.Errorf("widget session in the header elsewhere: allowed=%v %s, removed %v", kite.allowed, kite.reason, kite.removed)
	}
}

// TestDenialsOutsideDevelopmentAreCoarse: outside the development setup a
// client learns the status and a request id, never the precise reason
// (which could map private channels); the decision log has it.
func TestDenialsOutsideDevelopmentAreCoarse(t *testing.T) {
	e := startE2E(t, map[string]string{"development: true": "development: false"})
	for _, c := range []struct {
		call          httpCall
		status        int
		coarse, exact string
	}{
		{httpCall{method: "POST", path: commandPath("team-private", "MarkReadCommand"), token: e.link("public-lobby")}, 403, "forbidden", "channel_not_bound"},
		{httpCall{method: "POST", path: "/v1/jwt/login", token: "not-a-token"}, 401, "unauthorized", "invalid_token"},
	} {
		a := e.check(c.call)
		var body map[string]string
		if err := json.Unmarshal([]byte(a.resp.GetDeniedResponse().GetBody()), &body); err != nil {
			t.Fatalf("%s: deny body: %v", c.call.path, err)
		}
		if a.status != c.status || a.reason != c.exact {
			t.Errorf("%s: %d %s, want %d %s", c.call.path, a.status, a.reason, c.status, c.exact)
		}
		if body["error"] != c.coarse || body["request_id"] == "" || body["reason"] != "" || len(body) != 2 {
			t.Errorf("%s: client body %v, want only error %q and request_id", c.call.path, body, c.coarse)
		}
	}
}

// TestRegistryEditsReachLiveTokens edits the registry data of a running
// sidecar's policy copy: a widget's anonymous sessions turned off deny its
// live tokens, a channel made private ends its link sessions, a channel
// assigned to a widget opens to its unbound tokens, all at the next reload;
// a broken policy is refused, logged and shown in /readyz while the last
// good one keeps deciding.
func TestRegistryEditsReachLiveTokens(t *testing.T) {
	e := startE2E(t, nil)
	kite := e.kite("W-DEMO", "kite-chan-1")
	link := e.link("public-lobby")
	unbound := e.signXBS(xbsClaims("W-DEMO"))
	markRead := httpCall{method: "POST", path: commandPath("kite-chan-1", "MarkReadCommand"), token: kite}
	linkRead := httpCall{method: "POST", path: commandPath("public-lobby", "MarkReadCommand"), token: link}
	join := httpCall{method: "POST", path: commandPath("team-private", "MarkReadCommand"), token: unbound}
	reasonOf := func(c httpCall) func() (bool, string) {
		return func() (bool, string) { a := e.check(c); return false, a.reason }
	}
	until := func(what string, c httpCall, want string) {
		t.Helper()
		testsupport.EventuallyState(t, what, func() (bool, string) {
			_, got := reasonOf(c)()
			return got == want, got
		})
	}
	for _, c := range []struct {
		call httpCall
		want string
	}{{markRead, "allowed"}, {linkRead, "allowed"}, {join, "channel_not_assigned"}} {
		if _, got := reasonOf(c.call)(); got != c.want {
			t.Fatalf("before any edit: %s %s = %s, want %s", c.call.method, c.call.path, got, c.want)
		}
	}

	setWidget := func(enabled bool, channels ...string) func(map[string]any) {
		return func(doc map[string]any) {
			w := doc["widgets"].(map[string]any)["W-DEMO"].(map[string]any)
			w["anonymous_sessions"] = enabled
			w["channels"] = channels
		}
	}
	e.editJSON("registry/widgets.json", setWidget(true, "support-1", "team-private"))
	until("an unbound token acts in a private channel newly assigned to its widget", join, "allowed")

	e.editJSON("registry/widgets.json", setWidget(false, "support-1", "team-private"))
	until("a live widget-session token is denied once its widget's sessions are off", markRead, "widget_disabled")
	if _, got := reasonOf(join)(); got != "widget_disabled" {
		t.Errorf("unbound token of the disabled widget: %s, want widget_disabled", got)
	}

	e.editJSON("registry/channels.json", func(doc map[string]any) {
		doc["channels"].(map[string]any)["public-lobby"].(map[string]any)["public"] = false
	})
	until("a live link token is denied once its channel is private", linkRead, "channel_not_public")

	// A broken policy: refused, the last good policy keeps deciding.
	before := e.s.engine.Revision()
	writeFile(t, filepath.Join(e.policyDir, "broken.rego"), "package guestgate.authz\n\ndecision := {\n")
	testsupport.EventuallyState(t, "/readyz shows the refused reload", func() (bool, string) {
		rd := e.readyz()
		return strings.Contains(rd.Policy.LastError, "broken.rego"), rd.Policy.LastError
	})
	if rev := e.s.engine.Revision(); rev != before {
		t.Errorf("revision moved from %s to %s on a refused reload", before, rev)
	}
	if rd := e.readyz(); !rd.Ready || rd.Policy.Revision != before {
		t.Errorf("readiness after a refused reload: %+v", rd)
	}
	if _, got := reasonOf(linkRead)(); got != "channel_not_public" {
		t.Errorf("after a refused reload the last good policy decides %s, want channel_not_public", got)
	}
	if !strings.Contains(e.logs.String(), "policy reload refused") {
		t.Error("the refused reload is not logged")
	}
	if err := os.Remove(filepath.Join(e.policyDir, "broken.rego")); err != nil {
		t.Fatal(err)
	}
	testsupport.EventuallyState(t, "/readyz clears the error once the policy loads again", func() (bool, string) {
		rd := e.readyz()
		return rd.Policy.LastError == "", rd.Policy.LastError
	})
}

// readyz fetches and decodes the admin listener's /readyz.
func (e *e2e) readyz() readiness {
	e.t.Helper()
	resp, err := httpGet("http://" + e.s.adminLis.Addr().String() + "/readyz")
	if err != nil {
		e.t.Fatal(err)
	}
	var rd readiness
	if err := json.Unmarshal(resp, &rd); err != nil {
		e.t.Fatal(err)
	}
	return rd
}

// claimsOf decodes a compact token's payload (already verified elsewhere:
// this only reads it).
func claimsOf(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return maps.Clone(c)
}

// swapSignature puts b's signature on a's header and payload.
func swapSignature(a, b string) string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	return pa[0] + "." + pa[1] + "." + pb[2]
}

func mintGuestFor(t *testing.T, key []byte, iss, sub string) string {
	t.Helper()
	raw, err := tokens.MintGuest(key, iss, sub, "", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func readText(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// BenchmarkCheckShippedPolicy is one in-process Check of the development
// setup with the shipped policy: a widget session's MarkReadCommand, its
// token verified once and then answered from the verified-token cache.
// Allows are sampled in the decision log as in production (1%).
func BenchmarkCheckShippedPolicy(b *testing.B) {
	e := startE2E(b, map[string]string{"full: true": "full: false"})
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "POST", Path: commandPath("kite-chan-1", "MarkReadCommand"), Host: "chat.example.com",
		Headers: map[string]string{"authorization": "Bearer " + e.kite("W-DEMO", "kite-chan-1"), "content-type": "application/json",
			"content-length": "2", "x-request-id": "0123456789abcdef"},
		Body: "{}",
	}}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := e.s.checker.Check(ctx, req); resp.GetOkResponse() == nil {
			b.Fatal("denied")
		}
	}
}
