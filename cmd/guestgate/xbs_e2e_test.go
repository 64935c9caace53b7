package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// The outside user pool of these tests: guestgate neither mints its tokens
// nor holds its key, it fetches the pool's JWKS as it would Cognito's.
const (
	outsideIssuer   = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_OutsidePool"
	outsideAudience = "outside-widget-client"
	outsideKid      = "outside-key-1"
)

// outsidePool signs ID tokens with a key of its own and publishes the
// public half as its JWKS on a loopback server.
type outsidePool struct {
	key     tokens.SigningKey
	jwksURL string
}

func newOutsidePool(t *testing.T) *outsidePool {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	privJWK, err := jwk.FromRaw(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.PublicKeyOf(privJWK)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyIDKey, outsideKid)
	_ = pub.Set(jwk.AlgorithmKey, "RS256")
	_ = pub.Set(jwk.KeyUsageKey, "sig")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	doc, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	return &outsidePool{key: tokens.SigningKey{ID: outsideKid, Algorithm: "RS256", Private: privJWK}, jwksURL: srv.URL + "/.well-known/jwks.json"}
}

// trust is the config edit that trusts the pool, as a deployment would:
// its issuer, app client id and JWKS URL, and nothing about binding claims
// (the default for an issuer that is not guestgate's own: it asserts none).
func (p *outsidePool) trust() (string, string) {
	return "    - name: dev-partner\n", fmt.Sprintf(`    - name: outside-pool
      kind: xbs_anonymous
      issuer: %s
      audiences: [%s]
      jwks_url: %s
    - name: dev-partner
`, outsideIssuer, outsideAudience, p.jwksURL)
}

// claims are an ID token of the pool exactly as the XBS Anonymous
// document's example has them: these claims and no others.
func (p *outsidePool) claims(sub, widget string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"sub":                       sub,
		"custom:wid":                widget,
		"custom:authorization_type": "XBS_ANONYMOUS",
		"token_use":                 "id",
		"aud":                       outsideAudience,
		"iss":                       outsideIssuer,
		"name":                      "guest",
		"email":                     "anonymous-" + sub + "@anonymous.example.com",
		"email_verified":            false,
		"auth_time":                 now,
		"iat":                       now,
		"exp":                       now + 3600,
		"jti":                       "jti-" + sub,
		"origin_jti":                "origin-" + sub,
		"event_id":                  "event-" + sub,
		"cognito:username":          sub,
	}
}

// token is a visitor's ID token of widget, signed by the pool.
func (p *outsidePool) token(e *e2e, sub, widget string) string {
	return e.sign(p.key, "", p.claims(sub, widget))
}

// TestXBSWidgetFlowWithTheIdentityProvidersOwnTokens runs the widget flow
// of issue 14 through the real gRPC Check, the shipped policy and the
// embedded state store, with ID tokens of an outside pool: a visitor's own
// Kite channel, public links, the registry's channels, a restart, a widget
// turned off, and a race for one channel id.
func TestXBSWidgetFlowWithTheIdentityProvidersOwnTokens(t *testing.T) {
	pool := newOutsidePool(t)
	from, to := pool.trust()
	e := startE2E(t, map[string]string{
		from: to,
		// The race below is about who wins, not about latency: a store
		// write of 50 racers on a loaded disk may outlast the 250ms
		// default, which would deny state_unavailable (tested elsewhere).
		"  backend: embedded\n": "  backend: embedded\n  timeout: 10s\n  ownership:\n    max_channels: 3\n",
	})
	alice := pool.token(e, "11111111-aaaa-4000-8000-000000000001", "W-DEMO")
	bob := pool.token(e, "22222222-bbbb-4000-8000-000000000002", "W-DEMO")
	post := func(channel, command, token string) httpCall {
		return httpCall{method: "POST", path: commandPath(channel, command), token: token}
	}
	expect := func(what string, c httpCall, want string) answer {
		t.Helper()
		a := e.check(c)
		if got := a.reason; got != want || a.allowed != (want == "allowed") {
			t.Fatalf("%s (%s): allowed %v, reason %q (token_error %q), want %s", what, c.path, a.allowed, got, a.tokenError, want)
		}
		return a
	}

	// The pool's token reaches the policy as an unbound anonymous token.
	a := expect("alice's GetTokenCommand", post("", "GetTokenCommand", alice), "allowed")
	if a.kind != "xbs_anonymous" || a.headers["x-guestgate-widget"] != "W-DEMO" || a.headers["x-guestgate-issuer"] != outsideIssuer {
		t.Fatalf("GetTokenCommand reached upstream as %q with %v", a.kind, a.headers)
	}

	// Alice creates her Kite channel and may use every other command in it.
	const mine = "kite-3f0c9a7e"
	expect("alice creates her Kite channel", post(mine, "CreateKiteChannelCommand", alice), "allowed")
	others := 0
	for _, cmd := range anonymousCommands {
		if cmd == "GetTokenCommand" || cmd == "CreateKiteChannelCommand" {
			continue
		}
		others++
		expect("alice's "+cmd+" in her channel", post(mine, cmd, alice), "allowed")
	}
	if others != 8 {
		t.Fatalf("%d other commands, want the eight of policies/chat/commands.json", others)
	}
	expect("alice creating her channel again", post(mine, "CreateKiteChannelCommand", alice), "allowed")

	// Bob, a visitor of the same widget, may do nothing in it.
	for _, cmd := range anonymousCommands {
		switch cmd {
		case "GetTokenCommand":
		case "CreateKiteChannelCommand":
			expect("bob creating alice's channel", post(mine, cmd, bob), "channel_owned_by_another")
		default:
			expect("bob's "+cmd+" in alice's channel", post(mine, cmd, bob), "channel_not_owned")
		}
	}
	// A channel the registry lists is nobody's Kite channel.
	for _, ch := range []string{"support-1", "public-lobby", "team-private"} {
		expect("alice creating registry channel "+ch, post(ch, "CreateKiteChannelCommand", alice), "channel_registered")
	}
	expect("alice in a channel nobody created", post("kite-nobodys", "MarkReadCommand", alice), "channel_not_owned")

	// Public link: any public channel, never a private one not assigned.
	expect("alice joining a public channel", post("public-lobby", "JoinChannelCommand", alice), "allowed")
	for _, cmd := range []string{"MarkReadCommand", "UploadFileCommand", "TriggerMessageActionCommand"} {
		expect("alice's "+cmd+" in the public channel", post("public-lobby", cmd, alice), "allowed")
	}
	expect("alice joining a private channel not assigned", post("team-private", "JoinChannelCommand", alice), "channel_not_assigned")
	expect("alice in a private channel not assigned", post("team-private", "MarkReadCommand", alice), "channel_not_assigned")

	// A visitor owns at most state.ownership.max_channels (3 here).
	expect("alice's second channel", post("kite-second", "CreateKiteChannelCommand", alice), "allowed")
	expect("alice's third channel", post("kite-third", "CreateKiteChannelCommand", alice), "allowed")
	expect("alice's fourth channel", post("kite-fourth", "CreateKiteChannelCommand", alice), "channel_limit_reached")
	expect("bob's first channel, alice at her bound", post("kite-fourth", "CreateKiteChannelCommand", bob), "allowed")

	// The ownership survives a restart: the embedded store is a file.
	e.restart()
	expect("alice in her channel after a restart", post(mine, "MarkReadCommand", alice), "allowed")
	expect("bob in alice's channel after a restart", post(mine, "MarkReadCommand", bob), "channel_not_owned")
	expect("bob creating alice's channel after a restart", post(mine, "CreateKiteChannelCommand", bob), "channel_owned_by_another")

	// The ownership outcomes are counted.
	m := testsupport.Scrape(t, metricsURL(e.s))
	if n := testsupport.Metric(t, m, `guestgate_ownership_outcomes_total{need="require",outcome="yours"}`); n < 1 {
		t.Errorf("require/yours counted %v times", n)
	}
	if n := testsupport.Metric(t, m, `guestgate_ownership_outcomes_total{need="claim",outcome="owned_by_another"}`); n < 1 {
		t.Errorf("claim/owned_by_another counted %v times", n)
	}

	// 50 visitors race to create one id: exactly one owns it.
	const racers = 50
	var wg sync.WaitGroup
	results := make([]string, racers)
	for i := range racers {
		tok := pool.token(e, fmt.Sprintf("racer-%02d", i), "W-DEMO")
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := e.client.Check(ctx, checkRequestFor(post("kite-contested", "CreateKiteChannelCommand", tok)))
			switch {
			case err != nil:
				results[i] = "error: " + err.Error()
			case resp.GetStatus().GetCode() == int32(code.Code_OK):
				results[i] = "allowed"
			default:
				// The development setup's denials carry the precise reason.
				var body struct{ Reason string }
				_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
				results[i] = fmt.Sprintf("%d %s", int(resp.GetDeniedResponse().GetStatus().GetCode()), body.Reason)
			}
		}()
	}
	wg.Wait()
	if n := countOf(results, "allowed"); n != 1 || countOf(results, "403 channel_owned_by_another") != racers-1 {
		t.Fatalf("50 creations of one id: %d allowed, %v", n, results)
	}

	// The widget's anonymous sessions turned off: the owner loses its use.
	e.editJSON("registry/widgets.json", func(doc map[string]any) {
		doc["widgets"].(map[string]any)["W-DEMO"].(map[string]any)["anonymous_sessions"] = false
	})
	testsupport.EventuallyState(t, "the owner is denied once its widget is off", func() (bool, string) {
		a := e.check(post(mine, "MarkReadCommand", alice))
		return a.reason == "widget_disabled", a.reason
	})
	expect("alice creating a channel, widget off", post("kite-new", "CreateKiteChannelCommand", alice), "widget_disabled")
}

// TestOutsidePoolBindingClaimsReachNoChannel: a token of the outside pool
// that carries custom:entry and custom:channel_id (a pool whose users may
// write their own custom attributes) never reaches a channel its visitor
// could not reach without them: it is refused (bad_claims) whatever the
// channel, command or binding it names.
func TestOutsidePoolBindingClaimsReachNoChannel(t *testing.T) {
	pool := newOutsidePool(t)
	from, to := pool.trust()
	e := startE2E(t, map[string]string{from: to})
	const sub = "33333333-cccc-4000-8000-000000000003"
	plain := pool.token(e, sub, "W-DEMO")
	owner := pool.token(e, "44444444-dddd-4000-8000-000000000004", "W-DEMO")
	if a := e.check(httpCall{method: "POST", path: commandPath("kite-owned", "CreateKiteChannelCommand"), token: owner}); !a.allowed {
		t.Fatalf("another visitor's channel: %s", a.reason)
	}
	var bound []string
	for _, b := range []map[string]any{
		{"custom:entry": "kite", "custom:channel_id": "team-private"},
		{"custom:entry": "kite", "custom:channel_id": "kite-owned"},
		{"custom:entry": "kite", "custom:channel_id": "support-1"},
		{"custom:entry": "public_link", "custom:channel_id": "team-private", "custom:wid": nil},
		{"custom:entry": "public_link", "custom:channel_id": "public-lobby", "custom:wid": nil},
		{"custom:channel_id": "team-private"},
		{"custom:entry": "kite"},
	} {
		c := pool.claims(sub, "W-DEMO")
		for k, v := range b {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		bound = append(bound, e.sign(pool.key, "", c))
	}
	for _, ch := range []string{"team-private", "kite-owned", "support-1", "public-lobby", "kite-fresh"} {
		for _, cmd := range anonymousCommands {
			call := httpCall{method: "POST", path: commandPath(ch, cmd)}
			for i, tok := range bound {
				call.token = tok
				a := e.check(call)
				if a.allowed || a.status != 401 || a.tokenError != tokens.CodeBadClaims {
					t.Errorf("binding %d, %s in %s: allowed %v, status %d, token_error %q; want 401 bad_claims", i, cmd, ch, a.allowed, a.status, a.tokenError)
				}
			}
		}
	}
	// The same visitor without binding claims: only where the rules say.
	for _, c := range []struct{ ch, want string }{{"team-private", "channel_not_assigned"}, {"kite-owned", "channel_not_owned"}, {"public-lobby", "allowed"}} {
		if a := e.check(httpCall{method: "POST", path: commandPath(c.ch, "MarkReadCommand"), token: plain}); a.reason != c.want {
			t.Errorf("without binding claims in %s: %s, want %s", c.ch, a.reason, c.want)
		}
	}
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// guestgate check offline says what a visitor's own Kite channel needs of
// the state store, with the README's token (mint xbs-anonymous --unbound:
// the identity provider's own shape).
func TestCheckOfflineSaysWhatOwnershipARequestNeeds(t *testing.T) {
	repoRoot(t)
	var tok, errOut bytes.Buffer
	if code := run([]string{"mint", "xbs-anonymous", "--widget", "W-DEMO", "--unbound"}, nil, &tok, &errOut); code != 0 {
		t.Fatalf("mint: exit %d: %s", code, errOut.String())
	}
	c := claimsOf(t, strings.TrimSpace(tok.String()))
	if _, ok := c["custom:entry"]; ok || c["custom:channel_id"] != nil || c["custom:wid"] != "W-DEMO" {
		t.Fatalf("an unbound token with %v", c)
	}
	for _, tt := range []struct{ request, want string }{
		{"testdata/requests/create-kite-channel.json", "needs: to claim channel kite-my-chat"},
	} {
		var out bytes.Buffer
		if code := run([]string{"check", "--request", tt.request, "--token-file", "-"}, strings.NewReader(tok.String()), &out, &errOut); code != 0 {
			t.Fatalf("check: exit %d: %s", code, errOut.String())
		}
		if !strings.HasPrefix(out.String(), "decision: allowed  status: 200  reason: allowed") || !strings.Contains(out.String(), tt.want) {
			t.Fatalf("check output:\n%s", out.String())
		}
	}
}
