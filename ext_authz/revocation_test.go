package ext_authz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
)

// downRevocations is a deny-list that, when down is set, fails as a Redis
// snapshot past its stale bound does.
type downRevocations struct {
	state.Revocations
	down atomic.Bool
}

func (d *downRevocations) Revoked(ctx context.Context, t state.TokenRef) (bool, error) {
	if d.down.Load() {
		return false, fmt.Errorf("%w: test: snapshot stale", state.ErrUnavailable)
	}
	return d.Revocations.Revoked(ctx, t)
}

// Every verified token is checked against the deny-list: by its jti, its
// subject of its issuer, its widget, and an access token by the guest it
// was minted for. A covered token is shown to the policy as no token with
// token_error "revoked"; others of the same kind are untouched. A deny-list
// that cannot answer denies state_unavailable (503), whatever the policy.
func TestRevokedTokensAreTokenErrorRevoked(t *testing.T) {
	ws, err := testsupport.LoadDevelopment(devConfig)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ws.Verifier(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	store, err := state.Open(state.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	revs := &downRevocations{Revocations: store}
	eng, _ := policyEngine(t, allowAll)
	c := New(Settings{Verifier: v, Check: ws.Config.Check}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Revocations: revs})
	c.SetEngine(eng)

	decide := func(tok string) *Decision {
		return c.Decide(context.Background(), testsupport.CheckRequest("GET", "/x", tok, ""))
	}
	verified := func(raw string) *tokens.Token {
		tok, err := v.Verify(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	revoke := func(r state.Revocation) {
		r.Until = time.Now().Add(time.Hour)
		if err := store.Revoke(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	mint := func(n int) testsupport.Tokens {
		toks, err := ws.Mint(n)
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}
	one, two := mint(1), mint(2)
	for _, tok := range []string{one.Kite, one.SAT, one.Access, one.Link} {
		if d := decide(tok); d.TokenError != "" || !d.Allowed {
			t.Fatalf("before any revocation: token_error %q, allowed %v", d.TokenError, d.Allowed)
		}
	}
	kite := verified(one.Kite)
	sat := verified(one.SAT)
	access := verified(one.Access)
	guestIss, _ := access.Claims()["guest_iss"].(string)
	guestSub, _ := access.Claims()["guest_sub"].(string)
	for _, step := range []struct {
		name    string
		r       state.Revocation
		refused string // now token_error revoked
		spared  string // still verifies
	}{
		{"a jti", state.Revocation{Kind: state.RevokeToken, Value: sat.Claims()["jti"].(string)}, one.SAT, two.SAT},
		{"a subject of its issuer", state.Revocation{Kind: state.RevokeSubject, Issuer: kite.Issuer, Value: kite.Subject}, one.Kite, two.Kite},
		{"a guest, for its access tokens", state.Revocation{Kind: state.RevokeSubject, Issuer: guestIss, Value: guestSub}, one.Access, two.Access},
		{"a widget", state.Revocation{Kind: state.RevokeWidget, Value: kite.Claims()["custom:wid"].(string)}, two.Kite, two.Link},
	} {
		revoke(step.r)
		if d := decide(step.refused); d.TokenError != tokens.CodeRevoked || d.Kind != "" {
			t.Fatalf("%s revoked: token_error %q, kind %q", step.name, d.TokenError, d.Kind)
		}
		if d := decide(step.spared); d.TokenError != "" {
			t.Fatalf("%s revoked: another token is %q", step.name, d.TokenError)
		}
	}

	revs.down.Store(true)
	d := decide(two.Link)
	if d.Allowed || d.Status != http.StatusServiceUnavailable || d.Reason != ReasonStateUnavailable {
		t.Fatalf("deny-list down: allowed %v, %d %s", d.Allowed, d.Status, d.Reason)
	}
	// A request with no token needs no deny-list: it is decided.
	if d := decide(""); d.Reason == ReasonStateUnavailable || d.TokenError != tokens.CodeMissing {
		t.Fatalf("deny-list down, no token: %s, token_error %q", d.Reason, d.TokenError)
	}
	revs.down.Store(false)
	if d := decide(two.Link); !d.Allowed {
		t.Fatalf("deny-list back: %d %s", d.Status, d.Reason)
	}
}
