package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// The conformance suite: every backend runs every test below, so they keep
// one contract.

// fakeClock is the injected clock: time moves only when a test moves it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newClock() *fakeClock { return &fakeClock{t: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// env is one store under test with its clock.
type env struct {
	t     *testing.T
	store Store
	clock *fakeClock
	// resync brings a Redis client's revocation snapshot up to date after
	// the clock moved (its poller is off in the suite); nil on embedded.
	resync func()
	// serverClock: the backend's rate limiter runs on its own clock, not
	// on the injected one (Redis).
	serverClock bool
}

// at moves the clock to epoch+d.
func (e *env) at(d time.Duration) {
	e.clock.Set(epoch.Add(d))
	if e.resync != nil {
		e.resync()
	}
}

type backend struct {
	name string
	// open returns a new, empty store on clock, with opts's non-zero
	// fields applied.
	open func(t *testing.T, clock *fakeClock, opts Options) *env
}

// backends are the backends under test; Redis's clients use srv, or skip
// saying why when there is none.
func backends(srv *redisServer, noRedis error) []backend {
	return []backend{
		{BackendEmbedded, func(t *testing.T, clock *fakeClock, opts Options) *env {
			opts.Dir, opts.Now = t.TempDir(), clock.Now
			return &env{t: t, store: testEmbedded(t, opts), clock: clock}
		}},
		{BackendRedis, func(t *testing.T, clock *fakeClock, opts Options) *env {
			if noRedis != nil {
				t.Skip(noRedis)
			}
			opts.Now = clock.Now
			s := srv.client(t, opts, redisHooks{noPoll: true})
			return &env{t: t, store: s, clock: clock, serverClock: true, resync: func() {
				t.Helper()
				if err := s.syncRevocations(context.Background()); err != nil {
					t.Fatalf("revocation sync: %v", err)
				}
			}}
		}},
	}
}

// conform runs test on every backend, each subtest with a fresh store
// (on Redis: a fresh key prefix on one server).
func conform(t *testing.T, opts Options, test func(t *testing.T, e *env)) {
	srv, noRedis := launchRedis(t)
	for _, b := range backends(srv, noRedis) {
		t.Run(b.name, func(t *testing.T) {
			test(t, b.open(t, newClock(), opts))
		})
	}
}

var (
	ctx     = context.Background()
	idle    = 10 * time.Minute
	alice   = Owner{Issuer: "https://idp.example", Subject: "alice", Widget: "w1"}
	bob     = Owner{Issuer: "https://idp.example", Subject: "bob", Widget: "w1"}
	aliceX  = Owner{Issuer: "https://other.example", Subject: "alice", Widget: "w1"}
	aliceW2 = Owner{Issuer: "https://idp.example", Subject: "alice", Widget: "w2"}
)

// step is one operation on the ownership records at epoch+at.
type step struct {
	name    string
	at      time.Duration
	op      string // "claim" or "require"
	channel string
	owner   Owner
	max     int
	claim   ClaimOutcome
	require RequireOutcome
}

func runSteps(t *testing.T, e *env, steps []step) {
	t.Helper()
	for _, s := range steps {
		e.at(s.at)
		switch s.op {
		case "claim":
			got, err := e.store.Claim(ctx, s.channel, s.owner, idle, s.max)
			if err != nil || got != s.claim {
				t.Fatalf("%s: Claim(%s, %s) = %v, %v; want %v", s.name, s.channel, s.owner.Subject, got, err, s.claim)
			}
		case "require":
			got, err := e.store.Require(ctx, s.channel, s.owner, idle)
			if err != nil || got != s.require {
				t.Fatalf("%s: Require(%s, %s) = %v, %v; want %v", s.name, s.channel, s.owner.Subject, got, err, s.require)
			}
		default:
			t.Fatalf("%s: unknown op %q", s.name, s.op)
		}
	}
}

func TestClaimGivesEachChannelOneOwnerWithinEachOwnersBound(t *testing.T) {
	m := time.Minute
	conform(t, Options{}, func(t *testing.T, e *env) {
		runSteps(t, e, []step{
			{"a free channel is claimed", 0, "claim", "c1", alice, 2, Claimed, 0},
			{"claiming it again is already yours", 1 * m, "claim", "c1", alice, 2, AlreadyYours, 0},
			{"another visitor of the widget is refused", 1 * m, "claim", "c1", bob, 2, OwnedByAnother, 0},
			{"the same subject from another issuer is another owner", 1 * m, "claim", "c1", aliceX, 2, OwnedByAnother, 0},
			{"the same subject of another widget is another owner", 1 * m, "claim", "c1", aliceW2, 2, OwnedByAnother, 0},
			{"a second channel within the bound", 2 * m, "claim", "c2", alice, 2, Claimed, 0},
			{"a third channel over the bound", 2 * m, "claim", "c3", alice, 2, OverLimit, 0},
			{"a channel already yours at the bound", 2 * m, "claim", "c2", alice, 2, AlreadyYours, 0},
			{"another owner's bound is its own", 2 * m, "claim", "c3", bob, 2, Claimed, 0},
			{"owned by another comes before over the bound", 2 * m, "claim", "c3", alice, 2, OwnedByAnother, 0},
			{"still owned a millisecond before its idle expiry", 11*m - time.Millisecond, "claim", "c1", bob, 2, OwnedByAnother, 0},
			{"free for another at its idle expiry", 11 * m, "claim", "c1", bob, 2, Claimed, 0},
			{"a lost ownership no longer counts to the bound", 11 * m, "claim", "c4", alice, 2, Claimed, 0},
			{"two live ownerships fill the bound", 11 * m, "claim", "c5", alice, 2, OverLimit, 0},
			{"an expired ownership no longer counts to the bound", 12 * m, "claim", "c5", alice, 2, Claimed, 0},
		})
	})
}

func TestRequireAnswersForTheOwnerAloneAndRestartsItsIdleExpiry(t *testing.T) {
	m := time.Minute
	conform(t, Options{}, func(t *testing.T, e *env) {
		runSteps(t, e, []step{
			{"a channel never claimed is not owned", 0, "require", "c1", alice, 0, 0, NotOwned},
			{"claimed", 0, "claim", "c1", alice, 1, Claimed, 0},
			{"its owner", 5 * m, "require", "c1", alice, 0, 0, Yours},
			{"another visitor of the widget", 5 * m, "require", "c1", bob, 0, 0, OwnedByOther},
			{"the same subject from another issuer", 5 * m, "require", "c1", aliceX, 0, 0, OwnedByOther},
			{"the same subject of another widget", 5 * m, "require", "c1", aliceW2, 0, 0, OwnedByOther},
			{"kept past idle after the claim by its use at 5m", 15*m - time.Millisecond, "require", "c1", alice, 0, 0, Yours},
			{"a use at idle after the last one is too late", 25 * m, "require", "c1", alice, 0, 0, NotOwned},
			{"the lapsed channel is free", 25 * m, "claim", "c1", bob, 1, Claimed, 0},
			{"and its former owner is refused", 25 * m, "require", "c1", alice, 0, 0, OwnedByOther},
		})
	})
}

func TestFiftyRacingClaimersOfOneChannelGiveExactlyOneOwner(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		const n = 50
		outcomes := make([]ClaimOutcome, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				o := Owner{Issuer: "https://idp.example", Subject: fmt.Sprintf("visitor-%d", i), Widget: "w1"}
				outcomes[i], errs[i] = e.store.Claim(ctx, "contested", o, idle, 1)
			})
		}
		wg.Wait()
		winner := -1
		for i := range n {
			switch {
			case errs[i] != nil:
				t.Fatalf("claimer %d: %v", i, errs[i])
			case outcomes[i] == Claimed && winner >= 0:
				t.Fatalf("claimers %d and %d both claimed the channel", winner, i)
			case outcomes[i] == Claimed:
				winner = i
			case outcomes[i] != OwnedByAnother:
				t.Fatalf("claimer %d: %v, want owned_by_another", i, outcomes[i])
			}
		}
		if winner < 0 {
			t.Fatal("no claimer won")
		}
		for i := range n {
			o := Owner{Issuer: "https://idp.example", Subject: fmt.Sprintf("visitor-%d", i), Widget: "w1"}
			want := OwnedByOther
			if i == winner {
				want = Yours
			}
			if got, err := e.store.Require(ctx, "contested", o, idle); err != nil || got != want {
				t.Fatalf("Require by claimer %d = %v, %v; want %v", i, got, err, want)
			}
		}
	})
}

func TestFiftyRacingClaimsOfOneOwnerStayWithinItsBound(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		const n, bound = 50, 3
		outcomes := make([]ClaimOutcome, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				outcomes[i], errs[i] = e.store.Claim(ctx, fmt.Sprintf("c%d", i), alice, idle, bound)
			})
		}
		wg.Wait()
		counts := map[ClaimOutcome]int{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("claim %d: %v", i, errs[i])
			}
			counts[outcomes[i]]++
		}
		if counts[Claimed] != bound || counts[OverLimit] != n-bound {
			t.Fatalf("outcomes %v, want %d claimed and %d over_limit", counts, bound, n-bound)
		}
	})
}

func TestRememberRefusesAKeyUntilItsExpiry(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		until := epoch.Add(5 * time.Minute)
		for _, s := range []struct {
			name string
			at   time.Duration
			key  string
			want bool
		}{
			{"first use", 0, "sig-1", true},
			{"a replay", time.Minute, "sig-1", false},
			{"another key", time.Minute, "sig-2", true},
			{"a replay a millisecond before the expiry", 5*time.Minute - time.Millisecond, "sig-1", false},
		} {
			e.at(s.at)
			if got, err := e.store.Remember(ctx, s.key, until); err != nil || got != s.want {
				t.Fatalf("%s: Remember(%s) = %v, %v; want %v", s.name, s.key, got, err, s.want)
			}
		}
		e.at(5 * time.Minute)
		if got, err := e.store.Remember(ctx, "sig-1", epoch.Add(10*time.Minute)); err != nil || !got {
			t.Fatalf("a key at its expiry: Remember = %v, %v; want true", got, err)
		}
		if got, err := e.store.Remember(ctx, "sig-1", epoch.Add(10*time.Minute)); err != nil || got {
			t.Fatalf("a key remembered again: Remember = %v, %v; want false", got, err)
		}
	})
}

func TestAllowGrantsTheBurstThenRefusesWithTheWait(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		// One token an hour: no refill between the calls below on any
		// clock, the Redis server's included.
		hourly := Limit{PerSecond: 1.0 / 3600, Burst: 3}
		for i := range 3 {
			if ok, _, err := e.store.Allow(ctx, "addr-1", hourly); err != nil || !ok {
				t.Fatalf("request %d of the burst: %v, %v", i+1, ok, err)
			}
		}
		ok, retry, err := e.store.Allow(ctx, "addr-1", hourly)
		if err != nil || ok {
			t.Fatalf("request over the burst: %v, %v; want refused", ok, err)
		}
		if retry <= 0 || retry > time.Hour {
			t.Fatalf("retry after %v, want within (0, 1h]", retry)
		}
		if ok, _, err := e.store.Allow(ctx, "addr-1", hourly); err != nil || ok {
			t.Fatalf("a refused request spent nothing, so the next is refused too: %v, %v", ok, err)
		}
		if ok, _, err := e.store.Allow(ctx, "addr-2", hourly); err != nil || !ok {
			t.Fatalf("another key's bucket is its own: %v, %v", ok, err)
		}
	})
}

func TestAllowRefillsAtItsRateOnTheStoresClock(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		if e.serverClock {
			t.Skip("this backend's limiter runs on the server's clock, which a test cannot move; " +
				"TestAllowGrantsTheBurstThenRefusesWithTheWait checks its wait")
		}
		perSecond := Limit{PerSecond: 1, Burst: 2}
		for _, s := range []struct {
			at   time.Duration
			want bool
		}{{0, true}, {0, true}, {0, false}, {999 * time.Millisecond, false}, {time.Second, true}, {time.Second, false}, {3 * time.Second, true}, {3 * time.Second, true}, {3 * time.Second, false}} {
			e.at(s.at)
			if ok, _, err := e.store.Allow(ctx, "k", perSecond); err != nil || ok != s.want {
				t.Fatalf("at %v: Allow = %v, %v; want %v", s.at, ok, err, s.want)
			}
		}
	})
}

func TestRevokedCoversTokenIDsSubjectsPerIssuerAndWidgetsUntilTheirEnd(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		h := time.Hour
		for _, r := range []Revocation{
			{Kind: RevokeToken, Value: "jti-1", Until: epoch.Add(h)},
			{Kind: RevokeSubject, Issuer: "https://idp.example", Value: "mallory", Until: epoch.Add(2 * h)},
			{Kind: RevokeWidget, Value: "w-bad", Until: epoch.Add(3 * h)},
		} {
			if err := e.store.Revoke(ctx, r); err != nil {
				t.Fatalf("Revoke(%v): %v", r, err)
			}
		}
		for _, c := range []struct {
			name string
			at   time.Duration
			tok  TokenRef
			want bool
		}{
			{"a revoked token id", 0, TokenRef{ID: "jti-1", Issuer: "https://idp.example", Subject: "alice"}, true},
			{"another token id", 0, TokenRef{ID: "jti-2", Issuer: "https://idp.example", Subject: "alice"}, false},
			{"a revoked subject", 0, TokenRef{ID: "jti-3", Issuer: "https://idp.example", Subject: "mallory"}, true},
			{"the same subject of another issuer", 0, TokenRef{ID: "jti-3", Issuer: "https://other.example", Subject: "mallory"}, false},
			{"a revoked widget", 0, TokenRef{Issuer: "https://idp.example", Subject: "alice", Widget: "w-bad"}, true},
			{"a token without claims", 0, TokenRef{}, false},
			{"a token id a millisecond before its end", h - time.Millisecond, TokenRef{ID: "jti-1"}, true},
			{"a token id at its end", h, TokenRef{ID: "jti-1"}, false},
			{"a subject still revoked", h, TokenRef{Issuer: "https://idp.example", Subject: "mallory"}, true},
			{"a subject at its end", 2 * h, TokenRef{Issuer: "https://idp.example", Subject: "mallory"}, false},
			{"a widget at its end", 3 * h, TokenRef{Widget: "w-bad"}, false},
		} {
			e.at(c.at)
			if got, err := e.store.Revoked(ctx, c.tok); err != nil || got != c.want {
				t.Fatalf("%s: Revoked = %v, %v; want %v", c.name, got, err, c.want)
			}
		}
	})
}

func TestRevokeKeepsTheLaterEndOfAnEntry(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		tok := TokenRef{ID: "jti-1"}
		for _, until := range []time.Duration{2 * time.Hour, time.Hour} {
			if err := e.store.Revoke(ctx, Revocation{Kind: RevokeToken, Value: "jti-1", Until: epoch.Add(until)}); err != nil {
				t.Fatal(err)
			}
		}
		e.at(90 * time.Minute)
		if got, err := e.store.Revoked(ctx, tok); err != nil || !got {
			t.Fatalf("an earlier end shortened the entry: Revoked = %v, %v", got, err)
		}
		e.at(2 * time.Hour)
		if got, err := e.store.Revoked(ctx, tok); err != nil || got {
			t.Fatalf("at the later end: Revoked = %v, %v; want false", got, err)
		}
	})
}

func TestBadInputIsRefusedAsInvalid(t *testing.T) {
	long := strings.Repeat("x", MaxKeyBytes+1)
	future := epoch.Add(time.Hour)
	ops := []struct {
		name string
		run  func(Store) error
	}{
		{"claim of an empty channel", func(s Store) error { _, err := s.Claim(ctx, "", alice, idle, 1); return err }},
		{"claim of an oversized channel", func(s Store) error { _, err := s.Claim(ctx, long, alice, idle, 1); return err }},
		{"claim without an issuer", func(s Store) error {
			_, err := s.Claim(ctx, "c", Owner{Subject: "a", Widget: "w"}, idle, 1)
			return err
		}},
		{"claim without a subject", func(s Store) error {
			_, err := s.Claim(ctx, "c", Owner{Issuer: "i", Widget: "w"}, idle, 1)
			return err
		}},
		{"claim without a widget", func(s Store) error {
			_, err := s.Claim(ctx, "c", Owner{Issuer: "i", Subject: "a"}, idle, 1)
			return err
		}},
		{"claim with no idle expiry", func(s Store) error { _, err := s.Claim(ctx, "c", alice, 0, 1); return err }},
		{"claim with a bound of zero", func(s Store) error { _, err := s.Claim(ctx, "c", alice, idle, 0); return err }},
		{"require with a negative idle expiry", func(s Store) error { _, err := s.Require(ctx, "c", alice, -time.Second); return err }},
		{"require of an empty channel", func(s Store) error { _, err := s.Require(ctx, "", alice, idle); return err }},
		{"remember an empty key", func(s Store) error { _, err := s.Remember(ctx, "", future); return err }},
		{"remember until now", func(s Store) error { _, err := s.Remember(ctx, "k", epoch); return err }},
		{"allow with no rate", func(s Store) error { _, _, err := s.Allow(ctx, "k", Limit{Burst: 1}); return err }},
		{"allow with no burst", func(s Store) error { _, _, err := s.Allow(ctx, "k", Limit{PerSecond: 1}); return err }},
		{"allow over the fastest rate", func(s Store) error {
			_, _, err := s.Allow(ctx, "k", Limit{PerSecond: 2 * MaxPerSecond, Burst: 1})
			return err
		}},
		{"revoke of an unknown kind", func(s Store) error {
			return s.Revoke(ctx, Revocation{Kind: "session", Value: "v", Until: future})
		}},
		{"revoke of an empty value", func(s Store) error { return s.Revoke(ctx, Revocation{Kind: RevokeToken, Until: future}) }},
		{"revoke of a subject without its issuer", func(s Store) error {
			return s.Revoke(ctx, Revocation{Kind: RevokeSubject, Value: "alice", Until: future})
		}},
		{"revoke of a widget naming an issuer", func(s Store) error {
			return s.Revoke(ctx, Revocation{Kind: RevokeWidget, Issuer: "i", Value: "w", Until: future})
		}},
		{"revoke ending now", func(s Store) error { return s.Revoke(ctx, Revocation{Kind: RevokeToken, Value: "j", Until: epoch}) }},
	}
	conform(t, Options{}, func(t *testing.T, e *env) {
		for _, op := range ops {
			if err := op.run(e.store); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", op.name, err)
			}
		}
	})
}

// everyOperation runs each operation of the store once with valid input.
var everyOperation = []struct {
	name string
	run  func(context.Context, Store) error
}{
	{"claim", func(c context.Context, s Store) error { _, err := s.Claim(c, "c", alice, idle, 1); return err }},
	{"require", func(c context.Context, s Store) error { _, err := s.Require(c, "c", alice, idle); return err }},
	{"remember", func(c context.Context, s Store) error { _, err := s.Remember(c, "k", epoch.Add(time.Hour)); return err }},
	{"allow", func(c context.Context, s Store) error {
		_, _, err := s.Allow(c, "k", Limit{PerSecond: 1, Burst: 1})
		return err
	}},
	{"revoke", func(c context.Context, s Store) error {
		return s.Revoke(c, Revocation{Kind: RevokeToken, Value: "j", Until: epoch.Add(time.Hour)})
	}},
	{"revoked", func(c context.Context, s Store) error { _, err := s.Revoked(c, TokenRef{ID: "j"}); return err }},
}

func TestADoneContextFailsEveryOperation(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		done, cancel := context.WithCancel(ctx)
		cancel()
		for _, op := range everyOperation {
			if err := op.run(done, e.store); !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s: %v, want ErrUnavailable", op.name, err)
			}
		}
	})
}

func TestAClosedStoreFailsEveryOperation(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		if err := e.store.Close(); err != nil {
			t.Fatal(err)
		}
		for _, op := range everyOperation {
			if err := op.run(ctx, e.store); !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s: %v, want ErrUnavailable", op.name, err)
			}
		}
		if h := e.store.Health(); h.Healthy {
			t.Errorf("Health after Close = %+v, want unhealthy", h)
		}
	})
}

// Owners are told apart field by field, however their fields concatenate.
func TestOwnersWhoseFieldsConcatenateAlikeAreDistinct(t *testing.T) {
	conform(t, Options{}, func(t *testing.T, e *env) {
		a := Owner{Issuer: "https://idp.example", Subject: "ab", Widget: "c"}
		b := Owner{Issuer: "https://idp.example", Subject: "a", Widget: "bc"}
		if got, err := e.store.Claim(ctx, "c1", a, idle, 1); err != nil || got != Claimed {
			t.Fatalf("Claim by a = %v, %v", got, err)
		}
		if got, err := e.store.Require(ctx, "c1", b, idle); err != nil || got != OwnedByOther {
			t.Fatalf("Require by b = %v, %v; want owned_by_other", got, err)
		}
		if got, err := e.store.Claim(ctx, "c2", b, idle, 1); err != nil || got != Claimed {
			t.Fatalf("b's bound is its own: Claim = %v, %v", got, err)
		}
	})
}
