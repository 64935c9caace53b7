package ext_authz

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
)

// ownershipPolicy names the effect the path says: /claim/{channel},
// /require/{channel}; /plain is the same allow without one, and the rest
// are effects of the wrong shape.
const ownershipPolicy = `package guestgate.authz

decision := {"allowed": true, "headers": {"x-guestgate-subject": "v"}, "ownership": {"channel": input.parsed_path[1], "need": input.parsed_path[0]}} if {
	input.parsed_path[0] in {"claim", "require"}
}

decision := {"allowed": true, "headers": {"x-guestgate-subject": "v"}} if input.parsed_path == ["plain"]

decision := {"allowed": false, "reason": "nope", "ownership": {"channel": "c", "need": "claim"}} if input.parsed_path == ["deny-with-effect"]

decision := {"allowed": true, "ownership": {"channel": "c", "need": "steal"}} if input.parsed_path == ["bad-need"]

decision := {"allowed": true, "ownership": {"channel": "", "need": "claim"}} if input.parsed_path == ["empty-channel"]

decision := {"allowed": true, "ownership": {"channel": "c", "need": "claim", "owner": "me"}} if input.parsed_path == ["extra-key"]

decision := {"allowed": true, "ownership": "c"} if input.parsed_path == ["not-object"]
`

const ownIss = "https://pool.example/outside"

// fakeOwnerships answers what it is told, and records what it was asked.
type fakeOwnerships struct {
	mu      sync.Mutex
	claim   state.ClaimOutcome
	require state.RequireOutcome
	err     error
	asked   []string // need channel owner
}

func (f *fakeOwnerships) Claim(_ context.Context, ch string, o state.Owner, idle time.Duration, max int) (state.ClaimOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, fmt.Sprintf("claim %s %s|%s|%s %v %d", ch, o.Issuer, o.Subject, o.Widget, idle, max))
	return f.claim, f.err
}

func (f *fakeOwnerships) Require(_ context.Context, ch string, o state.Owner, idle time.Duration) (state.RequireOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, fmt.Sprintf("require %s %s|%s|%s %v", ch, o.Issuer, o.Subject, o.Widget, idle))
	return f.require, f.err
}

// ownershipFixture is a checker of ownershipPolicy with a verifier of one
// xbs_anonymous pool, and a visitor's token of it.
type ownershipFixture struct {
	checker *Checker
	token   string
	logs    *testsupport.LogBuffer
}

func newOwnershipFixture(tb testing.TB, store OwnershipStore, offline bool) *ownershipFixture {
	tb.Helper()
	return newOwnershipFixtureWith(tb, store, offline, "")
}

// newOwnershipFixtureWith is newOwnershipFixture with more config (YAML,
// top-level keys other than decision_log and state).
func newOwnershipFixtureWith(tb testing.TB, store OwnershipStore, offline bool, extra string) *ownershipFixture {
	tb.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	privJWK, _ := jwk.FromRaw(priv)
	pub, _ := jwk.PublicKeyOf(privJWK)
	_ = pub.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	v, err := tokens.New(context.Background(), tokens.Config{Issuers: []tokens.Issuer{{
		Name: "pool", Kind: tokens.KindXBSAnonymous, Issuer: ownIss, Audiences: []string{"client"}, PublicKeys: set}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	now := time.Now().Unix()
	payload, _ := json.Marshal(map[string]any{"sub": "visitor-1", "custom:wid": "W-1", "custom:authorization_type": "XBS_ANONYMOUS",
		"token_use": "id", "aud": "client", "iss": ownIss, "iat": now, "exp": now + 3600})
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, "k1")
	raw, err := jws.Sign(payload, jws.WithKey(jwa.RS256, privJWK, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		tb.Fatal(err)
	}
	eng, dir := policyEngine(tb, ownershipPolicy)
	cfg, err := config.Parse([]byte("decision_log:\n  full: true\nstate:\n  ownership:\n    idle: 2h\n    max_channels: 7\n"+extra), dir)
	if err != nil {
		tb.Fatal(err)
	}
	logs := &testsupport.LogBuffer{}
	c := New(Settings{Verifier: v, Check: cfg.Check, DecisionLog: cfg.DecisionLog, Ownership: cfg.State.Ownership},
		Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), State: store, Offline: offline})
	c.SetEngine(eng)
	return &ownershipFixture{checker: c, token: string(raw), logs: logs}
}

func (f *ownershipFixture) decide(path string) *Decision {
	return f.checker.Decide(context.Background(), checkRequest("POST", path, map[string]string{"authorization": "Bearer " + f.token}, ""))
}

// The effect is applied on every request, the decision cache's answers
// included: the same request, answered from the cache from its second
// sighting on, follows the store's answer every time, and the store is
// asked about the token's visitor with the configured bounds.
func TestOwnershipEffectAppliesToEveryRequestCachedOrNot(t *testing.T) {
	store := &fakeOwnerships{}
	f := newOwnershipFixture(t, store, false)
	steps := []struct {
		claim  state.ClaimOutcome
		err    error
		allow  bool
		status int
		reason string
	}{
		{state.Claimed, nil, true, 200, ReasonAllowed},
		{state.OwnedByAnother, nil, false, 403, ReasonChannelOwnedByAnother},
		{state.AlreadyYours, nil, true, 200, ReasonAllowed},
		{state.OverLimit, nil, false, 403, ReasonChannelLimitReached},
		{0, fmt.Errorf("%w: slow", state.ErrUnavailable), false, 503, ReasonStateUnavailable},
		{0, errors.New("anything else"), false, 503, ReasonStateUnavailable},
		{0, fmt.Errorf("%w: too long", state.ErrInvalid), false, 400, ReasonBadRequest},
		{state.Claimed, nil, true, 200, ReasonAllowed},
	}
	for i, s := range steps {
		store.claim, store.err = s.claim, s.err
		d := f.decide("/claim/kite-1")
		if d.Allowed != s.allow || d.Status != s.status || d.Reason != s.reason {
			t.Fatalf("step %d (%v, %v): allowed %v %d %s, want %v %d %s", i, s.claim, s.err, d.Allowed, d.Status, d.Reason, s.allow, s.status, s.reason)
		}
		if d.Ownership == nil || *d.Ownership != (Ownership{Channel: "kite-1", Need: NeedClaim}) {
			t.Fatalf("step %d: effect %+v", i, d.Ownership)
		}
		if !d.Allowed && (len(d.UpstreamHeaders) != 0 || d.DenyBody == "" || headerSet(d.DenyHeaders).has("x-guestgate-subject")) {
			t.Fatalf("step %d: the denial keeps the allow's parts: %+v", i, d)
		}
	}
	if len(store.asked) != len(steps) {
		t.Fatalf("the store was asked %d times for %d requests", len(store.asked), len(steps))
	}
	if want := "claim kite-1 " + ownIss + "|visitor-1|W-1 2h0m0s 7"; store.asked[0] != want {
		t.Fatalf("asked %q, want %q", store.asked[0], want)
	}
	for _, want := range []struct {
		r    state.RequireOutcome
		ok   bool
		what string
	}{{state.Yours, true, "yours"}, {state.NotOwned, false, "not_owned"}, {state.OwnedByOther, false, "owned_by_other"}, {state.Yours, true, "yours"}} {
		store.require, store.err = want.r, nil
		d := f.decide("/require/kite-1")
		if d.Allowed != want.ok || !want.ok && d.Reason != ReasonChannelNotOwned || d.OwnershipOutcome != want.what {
			t.Fatalf("require %v: allowed %v %s outcome %s", want.r, d.Allowed, d.Reason, d.OwnershipOutcome)
		}
	}
	// The decision log says what the store answered.
	if out := f.logs.String(); !containsAll(out, `"ownership_need":"require"`, `"ownership_outcome":"owned_by_other"`, `"ownership_outcome":"over_limit"`) {
		t.Fatalf("decision log without the ownership outcomes:\n%s", out)
	}
	// A request without an effect never asks the store.
	n := len(store.asked)
	if d := f.decide("/plain"); !d.Allowed || d.Ownership != nil || len(store.asked) != n {
		t.Fatalf("plain: %+v, store asked %d more", d, len(store.asked)-n)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// In the opa-envoy input format the ownership member is applied as in
// guestgate's: a format that ignores keys it does not know never ignores
// an effect into an allow.
func TestOwnershipEffectAppliesInTheOPAEnvoyFormat(t *testing.T) {
	store := &fakeOwnerships{claim: state.OwnedByAnother}
	f := newOwnershipFixtureWith(t, store, false, "check:\n  input_format: opa-envoy\n")
	d := f.decide("/claim/kite-1")
	if d.Allowed || d.Status != http.StatusForbidden || d.Reason != ReasonChannelOwnedByAnother || len(store.asked) != 1 {
		t.Fatalf("opa-envoy format: allowed %v %d %s, store asked %v", d.Allowed, d.Status, d.Reason, store.asked)
	}
	if resp := d.CheckResponse(); resp.GetDeniedResponse() == nil {
		t.Fatalf("opa-envoy format: the answer is no denial: %v", resp)
	}
	store.claim = state.Claimed
	if d := f.decide("/claim/kite-1"); !d.Allowed || len(store.asked) != 2 {
		t.Fatalf("opa-envoy format, claimed: allowed %v %s, store asked %v", d.Allowed, d.Reason, store.asked)
	}
	if d := f.decide("/bad-need"); d.Allowed {
		t.Fatalf("opa-envoy format: an effect of the wrong shape allowed")
	}
}

// Effects of the wrong shape, or on a denial, are decision_invalid.
func TestOwnershipEffectOfTheWrongShapeIsRefused(t *testing.T) {
	store := &fakeOwnerships{claim: state.Claimed}
	f := newOwnershipFixture(t, store, false)
	for _, p := range []string{"/deny-with-effect", "/bad-need", "/empty-channel", "/extra-key", "/not-object"} {
		if d := f.decide(p); d.Allowed || d.Reason != ReasonInvalid || d.Status != http.StatusForbidden {
			t.Errorf("%s: allowed %v %d %s, want 403 %s", p, d.Allowed, d.Status, d.Reason, ReasonInvalid)
		}
	}
	if len(store.asked) != 0 {
		t.Fatalf("the store was asked about a refused decision: %v", store.asked)
	}
}

// Without a store an effect denies state_unavailable; guestgate check
// (Offline) answers as the policy decided and says the effect was not
// applied.
func TestOwnershipEffectWithoutAStore(t *testing.T) {
	if d := newOwnershipFixture(t, nil, false).decide("/claim/kite-1"); d.Allowed || d.Status != 503 || d.Reason != ReasonStateUnavailable || d.OwnershipOutcome != OutcomeUnavailable {
		t.Fatalf("no store: %v %d %s %s", d.Allowed, d.Status, d.Reason, d.OwnershipOutcome)
	}
	if d := newOwnershipFixture(t, nil, true).decide("/require/kite-1"); !d.Allowed || d.OwnershipOutcome != OutcomeNotApplied || d.Ownership.Need != NeedRequire {
		t.Fatalf("offline: %v %s %+v", d.Allowed, d.OwnershipOutcome, d.Ownership)
	}
}

// BenchmarkCheckOwnership is the cost an ownership requirement adds to a
// Check, with the embedded store: the same allow without an effect
// (plain), and with a requirement of a channel the visitor owns (the
// common case: a read, no write while the idle expiry is fresh).
func BenchmarkCheckOwnership(b *testing.B) {
	st, err := state.Open(state.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	f := newOwnershipFixture(b, st, false)
	if d := f.decide("/claim/kite-1"); !d.Allowed {
		b.Fatalf("claim: %s", d.Reason)
	}
	for _, path := range []string{"/plain", "/require/kite-1"} {
		b.Run(path[1:], func(b *testing.B) {
			req := checkRequest("POST", path, map[string]string{"authorization": "Bearer " + f.token}, "")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if d := f.checker.Decide(ctx, req); !d.Allowed {
					b.Fatalf("%s: %s", path, d.Reason)
				}
			}
		})
	}
}

// The decision endpoint (the playground's) applies the effect as the check
// does and shows it with the store's answer.
func TestDecisionEndpointShowsTheOwnershipEffect(t *testing.T) {
	store := &fakeOwnerships{claim: state.OwnedByAnother}
	f := newOwnershipFixture(t, store, false)
	srv := httptest.NewServer(f.checker.DecideHandler())
	t.Cleanup(srv.Close)
	body, _ := json.Marshal(DecideRequest{Method: "POST", Path: "/claim/kite-9", Token: f.token})
	status, out := postDecide(t, srv.URL, "application/json", string(body))
	want := map[string]any{"channel": "kite-9", "need": "claim", "outcome": "owned_by_another"}
	if status != 200 || out["allowed"] != false || out["reason"] != ReasonChannelOwnedByAnother || !reflect.DeepEqual(out["ownership"], want) {
		t.Fatalf("%d %v", status, out)
	}
	if len(store.asked) != 1 {
		t.Fatalf("the store was asked %d times", len(store.asked))
	}
	body, _ = json.Marshal(DecideRequest{Method: "POST", Path: "/plain", Token: f.token})
	if _, out := postDecide(t, srv.URL, "application/json", string(body)); out["ownership"] != nil {
		t.Fatalf("an allow without an effect shows %v", out["ownership"])
	}
}
