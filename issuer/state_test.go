package issuer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestgate/guestgate/state"
)

// openStore opens an embedded store in a temporary directory, on the
// test's clock.
func openStore(t testing.TB, now func() time.Time) state.Store {
	t.Helper()
	st, err := state.Open(state.Options{Dir: t.TempDir(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// failingStore fails the operations whose flag is set, as a backend that is
// down does (an error wrapping state.ErrUnavailable).
type failingStore struct {
	state.Store
	allow, remember, revoked atomic.Bool
}

func (f *failingStore) down(what string) error {
	return fmt.Errorf("%w: test: %s down", state.ErrUnavailable, what)
}

func (f *failingStore) Allow(ctx context.Context, key string, l state.Limit) (bool, time.Duration, error) {
	if f.allow.Load() {
		return false, 0, f.down("allow")
	}
	return f.Store.Allow(ctx, key, l)
}

func (f *failingStore) Remember(ctx context.Context, key string, until time.Time) (bool, error) {
	if f.remember.Load() {
		return false, f.down("remember")
	}
	return f.Store.Remember(ctx, key, until)
}

func (f *failingStore) Revoked(ctx context.Context, t state.TokenRef) (bool, error) {
	if f.revoked.Load() {
		return false, f.down("revoked")
	}
	return f.Store.Revoked(ctx, t)
}

type countingObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *countingObserver) Minted(route, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[route+" "+outcome]++
}

func (o *countingObserver) count(route, outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[route+" "+outcome]
}

// serveWith serves a second issuer of f's settings on store.
func (f *fixture) serveWith(t *testing.T, store State, obs Observer) *httptest.Server {
	t.Helper()
	is, err := New(f.settings(), Options{State: store, Observer: obs, Registry: f.eng, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	is.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestNewRefusesNoStateStore(t *testing.T) {
	f := newFixture(t, "")
	if _, err := New(f.settings(), Options{Registry: f.eng}); err == nil {
		t.Fatal("an issuer without a state store was built")
	}
}

// Every step that needs the store refuses when it cannot answer: 503
// state_unavailable with Retry-After, counted as that outcome; nothing is
// minted. When the store answers again, so does the issuer.
func TestAStoreThatCannotAnswerRefusesMinting503(t *testing.T) {
	f := newFixture(t, "")
	fs := &failingStore{Store: f.store}
	obs := &countingObserver{n: map[string]int{}}
	f.srv = f.serveWith(t, fs, obs)
	guest := f.mintGuest(guestSecretA, "g-1", "Guest", time.Hour)
	for _, step := range []struct {
		name  string
		flag  *atomic.Bool
		route string
		call  func() answer
	}{
		{"rate limit", &fs.allow, RoutePublicChat, func() answer { return f.do("POST", "/v1/anonymous/public-chats/public-lobby/token", nil, "", "") }},
		{"replay memory", &fs.remember, RouteSecureAnonymous, func() answer { return f.sat("acct-1", "prov-1", f.admin().headers(), "", "") }},
		{"revocations", &fs.revoked, RouteGuestLogin, func() answer { a, _ := f.login(guest); return a }},
	} {
		step.flag.Store(true)
		a := step.call()
		if a.status != http.StatusServiceUnavailable || a.apiError().Error != ReasonStateUnavailable || a.header.Get("Retry-After") == "" {
			t.Fatalf("%s down: %d %s", step.name, a.status, a.body)
		}
		if n := obs.count(step.route, ReasonStateUnavailable); n != 1 {
			t.Fatalf("%s down: counted %d times as state_unavailable", step.name, n)
		}
		step.flag.Store(false)
		if a := step.call(); a.status != http.StatusOK {
			t.Fatalf("%s back: %d %s", step.name, a.status, a.body)
		}
	}
}

// Two issuers on one store are one replay memory and one set of buckets:
// what the fleet's replicas share on Redis.
func TestIssuersSharingAStoreShareReplayMemoryAndLimits(t *testing.T) {
	f := newFixture(t, "  rate_limits: {per_address: {per_second: 0.001, burst: 2}, per_client: {per_second: 1000, burst: 1000}}\n")
	other := f.serveWith(t, f.store, nil)
	s := f.admin()
	f.satToken(f.sat("acct-1", "prov-1", s.headers(), "", ""))
	mine := f.srv
	f.srv = other
	if a := f.sat("acct-1", "prov-1", s.headers(), "", ""); a.status != http.StatusUnauthorized || a.apiError().Error != "signature_replayed" {
		t.Fatalf("the signature replayed on the second issuer answered %d %s", a.status, a.body)
	}
	// The burst of 2 is spent across both: one on each, then a 429.
	if a := f.do("POST", "/v1/anonymous/public-chats/public-lobby/token", nil, "", ""); a.status != http.StatusTooManyRequests {
		t.Fatalf("the third request of the address answered %d %s", a.status, a.body)
	}
	f.srv = mine
	if a := f.do("POST", "/v1/anonymous/public-chats/public-lobby/token", nil, "", ""); a.status != http.StatusTooManyRequests {
		t.Fatalf("the fourth request of the address answered %d %s", a.status, a.body)
	}
}

// A guest whose subject (per guest issuer) or guest token (jti) is revoked
// logs in no more: 401 invalid_token naming revoked.
func TestGuestLoginRefusesARevokedGuest(t *testing.T) {
	f := newFixture(t, "")
	tok := f.mintGuest(guestSecretA, "g-revoked", "Guest", time.Hour)
	if a, _ := f.login(tok); a.status != http.StatusOK {
		t.Fatalf("before the revocation: %d %s", a.status, a.body)
	}
	err := f.store.Revoke(context.Background(), state.Revocation{Kind: state.RevokeSubject, Issuer: guestIss, Value: "g-revoked", Until: f.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.login(tok)
	if e := a.apiError(); a.status != http.StatusUnauthorized || e.Error != "invalid_token" || e.Message != "the guest token was refused: revoked" {
		t.Fatalf("a revoked guest's login answered %d %s", a.status, a.body)
	}
	if a, _ := f.login(f.mintGuest(guestSecretA, "g-other", "Guest", time.Hour)); a.status != http.StatusOK {
		t.Fatalf("another guest of the issuer: %d %s", a.status, a.body)
	}
}
