package ext_authz

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// TestPanicInsideTheCheckIsADenial: a bug that panics anywhere inside a
// check (here, in the token verifier's cache hook) is a denied
// CheckResponse with the stable reason internal_error, never an allow, a
// bare gRPC error or a crashed sidecar; the next checks, of the same token
// too, are answered.
func TestPanicInsideTheCheckIsADenial(t *testing.T) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	var panicking bool
	// The verifier's clock stands still, so the tokens' expiry never
	// depends on the wall clock.
	now := time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)
	v, err := tokens.New(context.Background(), tokens.Config{
		Now: func() time.Time { return now },
		Issuers: []tokens.Issuer{{Name: "partner", Kind: tokens.KindGuest, Issuer: "partner-iss",
			GuestSecret: base64.StdEncoding.EncodeToString(secret)}},
		Hooks: tokens.Hooks{OnCacheMiss: func() {
			if panicking {
				panic("a bug in a hook")
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	eng, dir := policyEngine(t, testPolicy)
	cfg, err := config.Parse(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Settings{Verifier: v, Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{})
	c.SetEngine(eng)

	mint := func(name string) string {
		tok, err := tokens.MintGuest(secret, "partner-iss", name, "Ada", now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	check := func(tok string) *Decision {
		req := checkRequest("GET", "/allow-plain", map[string]string{"authorization": "Bearer " + tok}, "")
		resp, err := c.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("bare gRPC error: %v", err)
		}
		d := c.Decide(context.Background(), req)
		if allowed := codes.Code(resp.GetStatus().GetCode()) == codes.OK; allowed != d.Allowed {
			t.Fatalf("Check and Decide disagree: %v %v", resp.GetStatus(), d.Allowed)
		}
		return d
	}

	if d := check(mint("before")); !d.Allowed {
		t.Fatalf("before the panic: %s", d.Reason)
	}
	panicking = true
	during := mint("during")
	d := check(during)
	if d.Allowed || d.Status != http.StatusForbidden || d.Reason != ReasonInternal {
		t.Fatalf("a panicking check: allowed=%v %d %s, want a 403 %s", d.Allowed, d.Status, d.Reason, ReasonInternal)
	}
	if len(d.UpstreamHeaders) != 0 {
		t.Fatalf("a denied check sends headers upstream: %v", d.UpstreamHeaders)
	}
	// The token whose verification panicked is verified anew, not left
	// waiting on a verification that never finished.
	panicking = false
	if d := check(during); !d.Allowed {
		t.Fatalf("after the panic: %s", d.Reason)
	}
}
