package ext_authz

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// TestPathParametersAndOverlongEscapesCannotLeaveTheScopeThePolicyChecked
// drives the shipped policy with paths that an upstream reads as another
// resource than the one the policy saw: Tomcat, Jetty and Spring drop a
// ";param" from each segment before they resolve dot segments, so "..;"
// climbs out of the launchpad the token is scoped to; some decoders take
// an overlong UTF-8 escape (%C0%AE) for "."; a server that decodes twice
// takes %252E for ".". Each is a request the policy
// would allow on the segments it is shown, so only the path rules stand
// between it and the other launchpad (or route).
func TestPathParametersAndOverlongEscapesCannotLeaveTheScopeThePolicyChecked(t *testing.T) {
	c, ws := shippedChecker(t, 0, 0)
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	own := "/v1/launchpads/" + testsupport.Launchpad(1)
	cases := []struct{ name, method, path, tok, body string }{
		{"dot-dot with a parameter", "GET", own + "/..;/lp-other/apps", toks.SAT, ""},
		{"dot-dot with a named parameter", "GET", own + "/..;jsessionid=x/lp-other/apps", toks.SAT, ""},
		{"dot with a parameter", "GET", own + "/.;/apps", toks.SAT, ""},
		{"parameter on a segment", "GET", own + ";x/apps", toks.SAT, ""},
		{"another route's method through dot-dot", "PUT", "/v1/messages/..;/people/regular-person-1", toks.Access, `{}`},
		{"overlong dot-dot", "GET", own + "/%C0%AE%C0%AE/lp-other/apps", toks.SAT, ""},
		{"overlong slash", "GET", own + "%C0%AF..%C0%AFlp-other/apps", toks.SAT, ""},
		{"invalid UTF-8 escape", "GET", own + "/%FF/apps", toks.SAT, ""},
		{"raw invalid UTF-8", "GET", own + "/\xc0\xae\xc0\xae/lp-other/apps", toks.SAT, ""},
		{"double-encoded dot-dot", "GET", own + "/%252E%252E/lp-other/apps", toks.SAT, ""},
		{"double-encoded slash", "GET", own + "%252F..%252Flp-other/apps", toks.SAT, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := c.Decide(context.Background(), testsupport.CheckRequest(tc.method, tc.path, tc.tok, tc.body))
			if d.Allowed || d.Reason != ReasonBadPath {
				t.Fatalf("%s %q: allowed=%v reason=%s, want denied %s", tc.method, tc.path, d.Allowed, d.Reason, ReasonBadPath)
			}
		})
	}
	// The same requests without the confusing part are the policy's to
	// allow: the refusals above are the path rules', not the policy's.
	for _, p := range []string{own + "/apps", own + "/caf%C3%A9", own + "/100%25", own + "/%25x"} {
		if d := c.Decide(context.Background(), testsupport.CheckRequest("GET", p, toks.SAT, "")); !d.Allowed {
			t.Fatalf("GET %s denied (%s), want allowed", p, d.Reason)
		}
	}
}

// TestPathHeaderThatDisagreesWithThePathIsRefused: Envoy sends the request
// target twice, as the path attribute and as the :path header, and a
// policy may read either. They are one value; a CheckRequest in which they
// differ would let the policy check one path while the other is served.
func TestPathHeaderThatDisagreesWithThePathIsRefused(t *testing.T) {
	eng, _ := policyEngine(t, `package guestgate.authz

decision := input.attributes.request.http.headers[":path"] == "/allow-plain"
`)
	c := New(Settings{}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.SetEngine(eng)
	cases := []struct {
		name, path, header string
		allowed            bool
	}{
		{"same", "/allow-plain", "/allow-plain", true},
		{"other path", "/admin", "/allow-plain", false},
		{"other query", "/allow-plain?x=1", "/allow-plain", false},
	}
	for _, tc := range cases {
		d := c.Decide(context.Background(), checkRequest("GET", tc.path, map[string]string{":path": tc.header}, ""))
		if d.Allowed != tc.allowed || !tc.allowed && d.Reason != ReasonBadPath {
			t.Errorf("%s: allowed=%v reason=%s, want allowed=%v", tc.name, d.Allowed, d.Reason, tc.allowed)
		}
	}
}
