package state

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// notify returns a hook that reports each call on a channel, dropping
// calls nobody waits for, and a function that waits (bounded, for a real
// background poller or dialer) for the next call after it is called.
func notify[T any](t *testing.T) (func(T), func(what string) T) {
	ch := make(chan T, 64)
	hook := func(v T) {
		select {
		case ch <- v:
		default:
		}
	}
	next := func(what string) T {
		t.Helper()
		// Bounded: the poller and the pool's dialer run on real timers.
		wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		select {
		case v := <-ch:
			return v
		case <-wait.Done():
			t.Fatalf("no %s within 10s", what)
		}
		var zero T
		return zero
	}
	return hook, next
}

func TestRedisRevocationReachesAnotherClientWithinTwoPolls(t *testing.T) {
	srv := startRedis(t)
	clock := newClock()
	opts := Options{Now: clock.Now, Redis: RedisOptions{KeyPrefix: "fleet:"}}
	a := srv.client(t, opts, redisHooks{noPoll: true})
	synced, nextSync := notify[error](t)
	b := srv.client(t, opts, redisHooks{afterSync: synced})
	tok := TokenRef{ID: "jti-1"}
	if got, err := b.Revoked(ctx, tok); err != nil || got {
		t.Fatalf("before the revocation: Revoked on B = %v, %v", got, err)
	}
	if err := a.Revoke(ctx, Revocation{Kind: RevokeToken, Value: "jti-1", Until: epoch.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// The first poll to end may have read the counter before the revocation;
	// the second began after it. Two polls of 250ms: within 1s.
	for i := range 2 {
		if err := nextSync("poll of B"); err != nil {
			t.Fatalf("poll %d of B: %v", i+1, err)
		}
	}
	if got, err := b.Revoked(ctx, tok); err != nil || !got {
		t.Fatalf("two polls after the revocation: Revoked on B = %v, %v; want true", got, err)
	}
	if got, err := b.Revoked(ctx, TokenRef{ID: "jti-2"}); err != nil || got {
		t.Fatalf("another token on B: Revoked = %v, %v; want false", got, err)
	}
}

func TestRedisClientsShareOwnershipsReplayMemoryAndRateLimits(t *testing.T) {
	srv := startRedis(t)
	clock := newClock()
	opts := Options{Now: clock.Now, Redis: RedisOptions{KeyPrefix: "fleet:"}}
	a := srv.client(t, opts, redisHooks{noPoll: true})
	b := srv.client(t, opts, redisHooks{noPoll: true})
	hourly := Limit{PerSecond: 1.0 / 3600, Burst: 2}
	for _, c := range []struct {
		name string
		run  func() (any, error)
		want any
	}{
		{"A claims", func() (any, error) { return a.Claim(ctx, "c1", alice, idle, 1) }, Claimed},
		{"B knows the owner", func() (any, error) { return b.Require(ctx, "c1", alice, idle) }, Yours},
		{"B refuses another", func() (any, error) { return b.Claim(ctx, "c1", bob, idle, 1) }, OwnedByAnother},
		{"A refuses another", func() (any, error) { return a.Require(ctx, "c1", bob, idle) }, OwnedByOther},
		{"A takes a signature", func() (any, error) { return a.Remember(ctx, "sig", epoch.Add(time.Minute)) }, true},
		{"B refuses its replay", func() (any, error) { return b.Remember(ctx, "sig", epoch.Add(time.Minute)) }, false},
		{"A spends", func() (any, error) { ok, _, err := a.Allow(ctx, "addr", hourly); return ok, err }, true},
		{"B spends the rest", func() (any, error) { ok, _, err := b.Allow(ctx, "addr", hourly); return ok, err }, true},
		{"A finds the bucket empty", func() (any, error) { ok, _, err := a.Allow(ctx, "addr", hourly); return ok, err }, false},
	} {
		if got, err := c.run(); err != nil || got != c.want {
			t.Fatalf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func TestRedisStoppedGivesErrorsNotAllowsAndRecoversWhenRestarted(t *testing.T) {
	srv := startRedis(t)
	clock := newClock()
	dialed, nextDial := notify[struct{}](t)
	s := srv.client(t, Options{Now: clock.Now},
		redisHooks{noPoll: true, onDial: func() { dialed(struct{}{}) }})
	if got, err := s.Claim(ctx, "c1", alice, idle, 2); err != nil || got != Claimed {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	if got, err := s.Remember(ctx, "sig", epoch.Add(time.Hour)); err != nil || !got {
		t.Fatalf("Remember = %v, %v", got, err)
	}
	if err := s.Revoke(ctx, Revocation{Kind: RevokeToken, Value: "jti-1", Until: epoch.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	srv.Stop(t)
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"a claim of a new channel", func() error { _, err := s.Claim(ctx, "c2", alice, idle, 2); return err }},
		{"a requirement the cache does not hold", func() error { _, err := s.Require(ctx, "c1", bob, idle); return err }},
		{"a replay check", func() error { _, err := s.Remember(ctx, "sig-2", epoch.Add(time.Hour)); return err }},
		{"a rate limit", func() error { _, _, err := s.Allow(ctx, "addr", Limit{PerSecond: 1, Burst: 5}); return err }},
		{"a revocation", func() error {
			return s.Revoke(ctx, Revocation{Kind: RevokeToken, Value: "jti-2", Until: epoch.Add(time.Hour)})
		}},
		{"a revocation sync", func() error { return s.syncRevocations(ctx) }},
	} {
		if err := op.run(); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Redis down, %s: %v, want ErrUnavailable", op.name, err)
		}
	}
	// Within the stale bound the local answers stand.
	if got, err := s.Require(ctx, "c1", alice, idle); err != nil || got != Yours {
		t.Errorf("Redis down, the owner within the bound: %v, %v; want yours from the cache", got, err)
	}
	if got, err := s.Revoked(ctx, TokenRef{ID: "jti-1"}); err != nil || !got {
		t.Errorf("Redis down, a revoked token within the bound: %v, %v; want revoked", got, err)
	}
	h := s.Health()
	if h.Healthy || h.LastError == "" || h.CacheAnswers != 1 {
		t.Errorf("Health with Redis down = %+v; want unhealthy, its error, one cache answer", h)
	}
	// Past it, nothing local is trusted.
	clock.Set(epoch.Add(DefaultStaleBound + time.Millisecond))
	if _, err := s.Require(ctx, "c1", alice, idle); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Redis down past the bound, the owner: %v, want ErrUnavailable", err)
	}
	if _, err := s.Revoked(ctx, TokenRef{ID: "jti-3"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Redis down past the bound, a token: %v, want ErrUnavailable", err)
	}

	srv.Start(t)
	// go-redis reconnects by itself: at once, or, once its dials failed
	// PoolSize times, when its once-a-second probe dials again.
	// Each failed attempt waits for the next dial (or takes one dialed
	// before the stop, still queued).
	for attempt := 0; s.syncRevocations(ctx) != nil; attempt++ {
		if attempt == 100 {
			t.Fatalf("not recovered after %d dials: %+v", attempt, s.Health())
		}
		nextDial("dial to the restarted Redis")
	}
	for _, c := range []struct {
		name string
		run  func() (any, error)
		want any
	}{
		{"the owner", func() (any, error) { return s.Require(ctx, "c1", alice, idle) }, Yours},
		{"another", func() (any, error) { return s.Claim(ctx, "c1", bob, idle, 2) }, OwnedByAnother},
		{"a replay", func() (any, error) { return s.Remember(ctx, "sig", epoch.Add(time.Hour)) }, false},
		{"a revoked token", func() (any, error) { return s.Revoked(ctx, TokenRef{ID: "jti-1"}) }, true},
	} {
		if got, err := c.run(); err != nil || got != c.want {
			t.Errorf("after the restart, %s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if h := s.Health(); !h.Healthy || h.Reconnects < 1 {
		t.Errorf("Health after recovery = %+v; want healthy with a reconnect", h)
	}
}

// A Redis that takes no writes (CLIENT PAUSE WRITE, as a stuck server would)
// fails each operation within Options.Timeout, and the pause ending lets
// the same client work again.
func TestRedisSlowServerFailsWithinTheTimeout(t *testing.T) {
	srv := startRedis(t)
	// The pause and the socket timeouts outlast the test binary's own
	// timeout: a store that did not bound the operation by its context
	// would hang this test until it fails.
	const long = 15 * time.Minute
	s := srv.client(t, Options{Now: newClock().Now, Timeout: 100 * time.Millisecond,
		Redis: RedisOptions{ReadTimeout: long, WriteTimeout: long}}, redisHooks{noPoll: true})
	admin := srv.admin(t, "")
	if err := admin.Do(ctx, "CLIENT", "PAUSE", long.Milliseconds(), "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Claim(ctx, "c1", alice, idle, 1)
	if uerr := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); uerr != nil {
		t.Fatal(uerr)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Claim while Redis is paused: %v, want ErrUnavailable", err)
	}
	if got, err := s.Claim(ctx, "c1", alice, idle, 1); err != nil || got != Claimed {
		t.Fatalf("Claim after the pause: %v, %v", got, err)
	}
}

func TestRedisPasswordIsUsedAndNeverShown(t *testing.T) {
	const password = "s3cret-Redis-pw"
	srv := startRedis(t, "--requirepass", password)
	for _, c := range []struct {
		name     string
		password string
		wantErr  bool
	}{
		{"the right password", password, false},
		{"a wrong password", "wrong-" + password, true},
		{"no password", "", true},
	} {
		s := srv.client(t, Options{Now: newClock().Now, Redis: RedisOptions{Password: c.password}}, redisHooks{noPoll: true})
		_, err := s.Claim(ctx, "c1", alice, idle, 1)
		if gotErr := err != nil; gotErr != c.wantErr {
			t.Errorf("%s: Claim = %v, want an error: %v", c.name, err, c.wantErr)
		}
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", c.name, err)
		}
		shown := s.Health().LastError
		if err != nil {
			shown += err.Error()
		}
		if strings.Contains(shown, password) {
			t.Errorf("%s: the password shows in %q", c.name, shown)
		}
	}
}

func TestRedisAddressMayNameTheSocketAsAURL(t *testing.T) {
	srv := startRedis(t)
	s := srv.client(t, Options{Now: newClock().Now, Redis: RedisOptions{Address: "unix://" + srv.Socket}}, redisHooks{noPoll: true})
	if got, err := s.Claim(ctx, "c1", alice, idle, 1); err != nil || got != Claimed {
		t.Fatalf("Claim over unix://: %v, %v", got, err)
	}
}

func TestRedisAbsentAtStartIsUnhealthyNotFatal(t *testing.T) {
	srv := &redisServer{}
	s := srv.client(t, Options{Now: newClock().Now, Redis: RedisOptions{Address: filepath.Join(t.TempDir(), "none.sock")}},
		redisHooks{noPoll: true})
	if h := s.Health(); h.Healthy || h.LastError == "" {
		t.Errorf("Health = %+v, want unhealthy with its error", h)
	}
	if _, err := s.Claim(ctx, "c1", alice, idle, 1); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Claim: %v, want ErrUnavailable", err)
	}
	if _, err := s.Revoked(ctx, TokenRef{ID: "j"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Revoked before any sync: %v, want ErrUnavailable", err)
	}
}

func TestRedisKeysStayUnderThePrefix(t *testing.T) {
	srv := startRedis(t)
	const prefix = "gg-test:"
	s := srv.client(t, Options{Now: newClock().Now, Redis: RedisOptions{KeyPrefix: prefix}}, redisHooks{noPoll: true})
	for _, err := range []error{
		func() error { _, err := s.Claim(ctx, "c1", alice, idle, 1); return err }(),
		func() error { _, err := s.Remember(ctx, "sig", epoch.Add(time.Hour)); return err }(),
		func() error { _, _, err := s.Allow(ctx, "addr", Limit{PerSecond: 1, Burst: 1}); return err }(),
		s.Revoke(ctx, Revocation{Kind: RevokeWidget, Value: "w", Until: epoch.Add(time.Hour)}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	keys, err := srv.admin(t, "").Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 6 { // channel, owner's channels, replay, bucket, deny-list, its counter
		t.Errorf("keys %q, want 6", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(k, "rate:"+prefix) {
			t.Errorf("key %q is outside %q and %q", k, prefix, "rate:"+prefix)
		}
	}
}

// A Redis that lost its data (restarted empty) does not lift a revocation
// a client has seen: the snapshot drops an entry only at its end.
func TestRedisSnapshotKeepsRevocationsRedisLost(t *testing.T) {
	srv := startRedis(t)
	s := srv.client(t, Options{Now: newClock().Now}, redisHooks{noPoll: true})
	if err := s.Revoke(ctx, Revocation{Kind: RevokeToken, Value: "jti-1", Until: epoch.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := srv.admin(t, "").FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.syncRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Revoked(ctx, TokenRef{ID: "jti-1"}); err != nil || !got {
		t.Fatalf("after FLUSHALL: Revoked = %v, %v; want still revoked", got, err)
	}
}

// An entry in the deny-list this store could not have written fails the
// sync: checks then deny once the snapshot is stale, rather than run on a
// list read in part.
func TestRedisForeignRevocationEntryFailsTheSync(t *testing.T) {
	srv := startRedis(t)
	s := srv.client(t, Options{Now: newClock().Now}, redisHooks{noPoll: true})
	admin := srv.admin(t, "")
	for _, c := range []struct{ name, field, value string }{
		{"a field of no shape", "junk", "1"},
		{"an unknown kind", joinKey("session", "", "x"), "99999999999999"},
		{"an end not a number", joinKey("jti", "", "x"), "soon"},
	} {
		prefix := s.prefix
		if err := admin.HSet(ctx, prefix+"rev", c.field, c.value).Err(); err != nil {
			t.Fatal(err)
		}
		if err := admin.Incr(ctx, prefix+"rev:v").Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.syncRevocations(ctx); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: sync = %v, want ErrUnavailable", c.name, err)
		}
		if err := admin.HDel(ctx, prefix+"rev", c.field).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAnotherVisitorsDenialKeepsTheOwnersCachedAnswer: bob asking about
// alice's channel (denied: not his) does not drop alice's confirmation, so
// alice keeps her channel through an outage whoever knocked on it before.
func TestAnotherVisitorsDenialKeepsTheOwnersCachedAnswer(t *testing.T) {
	srv := startRedis(t)
	s := srv.client(t, Options{Now: newClock().Now}, redisHooks{noPoll: true})
	if got, err := s.Claim(ctx, "c1", alice, idle, 2); err != nil || got != Claimed {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	if got, err := s.Require(ctx, "c1", bob, idle); err != nil || got != OwnedByOther {
		t.Fatalf("bob's Require = %v, %v; want owned by another", got, err)
	}
	if got, err := s.Claim(ctx, "c1", bob, idle, 2); err != nil || got != OwnedByAnother {
		t.Fatalf("bob's Claim = %v, %v; want owned by another", got, err)
	}
	srv.Stop(t)
	if got, err := s.Require(ctx, "c1", alice, idle); err != nil || got != Yours {
		t.Errorf("Redis down, the owner after bob's denials: %v, %v; want yours from the cache", got, err)
	}
	if _, err := s.Require(ctx, "c1", bob, idle); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Redis down, bob: %v, want ErrUnavailable", err)
	}
}
