package ext_authz

import (
	"context"
	"net/url"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/guestgate/guestgate/state"
)

// The ownership effect through the real gRPC Check and a real embedded
// store, in both input formats: an allow whose effect fails is never an OK
// CheckResponse, whatever the channel's bytes, the decision cache's answer
// or the store's state. The channel is the store's key exactly as the
// policy named it (the path decoded once): another spelling of the same
// bytes is the same channel, other bytes (case, Unicode normalisation) are
// another channel, never this visitor's. A store that fails is
// state_unavailable, never an allow.
func TestOwnershipEffectThroughTheGRPCCheck(t *testing.T) {
	for _, format := range []string{"guestgate", "opa-envoy"} {
		t.Run(format, func(t *testing.T) {
			store, err := state.Open(state.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			f := newOwnershipFixtureWith(t, store, false, "check:\n  input_format: "+format+"\n")
			client := authv3.NewAuthorizationClient(loopback(t, f.checker.Register))
			check := func(path string) *authv3.CheckResponse {
				t.Helper()
				resp, err := client.Check(context.Background(), checkRequest("POST", path, map[string]string{"authorization": "Bearer " + f.token}, ""))
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				return resp
			}
			allowed := func(resp *authv3.CheckResponse) bool {
				return resp.GetStatus().GetCode() == int32(code.Code_OK) && resp.GetDeniedResponse() == nil
			}
			long := strings.Repeat("k", state.MaxKeyBytes+1)
			nfc, nfd := "kite-caf\u00e9", "kite-cafe\u0301"
			for _, s := range []struct {
				path  string
				allow bool
			}{
				{"/require/kite-1", false}, // nobody's yet
				{"/claim/kite-1", true},
				{"/claim/kite-1", true}, // already yours, from the decision cache
				{"/require/kite-1", true},
				{"/require/kite-1", true},
				{"/require/KITE-1", false},  // another channel
				{"/require/kite-1~", false}, // another channel
				{"/claim/" + long, false},   // over the store's key bound
				{"/require/" + long, false},
				{"/claim/" + url.PathEscape(nfc), true},
				{"/require/" + nfc, true}, // the same bytes, spelled raw
				{"/require/" + url.PathEscape(nfd), false},
				{"/require/" + nfd, false},
			} {
				if got := allowed(check(s.path)); got != s.allow {
					t.Fatalf("%s: allowed %v, want %v", s.path[:min(len(s.path), 60)], got, s.allow)
				}
			}
			// The per-visitor bound (max_channels: 7 in the fixture): 2 owned.
			for i := range 5 {
				if resp := check("/claim/kite-more-" + string(rune('a'+i))); !allowed(resp) {
					t.Fatalf("claim %d within the bound denied: %v", i, resp.GetStatus())
				}
			}
			if resp := check("/claim/kite-one-too-many"); allowed(resp) {
				t.Fatal("a claim over max_channels allowed")
			}
			// The store gone: every effect denies 503, before and after the
			// decision cache has the decision.
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"/require/kite-1", "/claim/kite-1", "/claim/kite-new", "/require/kite-1"} {
				resp := check(p)
				if allowed(resp) {
					t.Fatalf("%s with the store closed: allowed", p)
				}
				if st := resp.GetDeniedResponse().GetStatus().GetCode(); st != 503 {
					t.Fatalf("%s with the store closed: status %v, want 503", p, st)
				}
			}
			if resp := check("/plain"); !allowed(resp) {
				t.Fatalf("a decision without an effect, store closed: %v", resp.GetStatus())
			}
		})
	}
}
