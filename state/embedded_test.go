package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testTimeout is the operations' timeout in tests that do not test it: a
// file sync (embedded, and Redis's log) on a machine busy with every
// package's tests can take longer than the default.
const testTimeout = 10 * time.Second

// testEmbedded opens an embedded store without its background sweep (the
// tests call sweep themselves), closed when t ends.
func testEmbedded(t testing.TB, opts Options) *embedded {
	t.Helper()
	opts.Backend = BackendEmbedded
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	if err := opts.setDefaults(); err != nil {
		t.Fatal(err)
	}
	s, err := openEmbedded(opts, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestEmbeddedRecordsOutliveARestart(t *testing.T) {
	dir, clock := t.TempDir(), newClock()
	opts := Options{Dir: dir, Now: clock.Now}
	first := testEmbedded(t, opts)
	if got, err := first.Claim(ctx, "c1", alice, idle, 1); err != nil || got != Claimed {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	if got, err := first.Remember(ctx, "sig-1", epoch.Add(time.Hour)); err != nil || !got {
		t.Fatalf("Remember = %v, %v", got, err)
	}
	if err := first.Revoke(ctx, Revocation{Kind: RevokeWidget, Value: "w-bad", Until: epoch.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Set(epoch.Add(time.Minute))
	again := testEmbedded(t, opts)
	for _, c := range []struct {
		name string
		run  func() (any, error)
		want any
	}{
		{"the owner still owns its channel", func() (any, error) { return again.Require(ctx, "c1", alice, idle) }, Yours},
		{"another is still refused it", func() (any, error) { return again.Claim(ctx, "c1", bob, idle, 1) }, OwnedByAnother},
		{"the owner's bound still counts it", func() (any, error) { return again.Claim(ctx, "c2", alice, idle, 1) }, OverLimit},
		{"a signature is still a replay", func() (any, error) { return again.Remember(ctx, "sig-1", epoch.Add(time.Hour)) }, false},
		{"a revocation is still in force", func() (any, error) { return again.Revoked(ctx, TokenRef{Widget: "w-bad"}) }, true},
	} {
		if got, err := c.run(); err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func TestEmbeddedFileIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	testEmbedded(t, Options{Dir: dir, Now: newClock().Now})
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, FileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}

func TestEmbeddedFileInUseIsRefusedAfterABoundedWait(t *testing.T) {
	dir := t.TempDir()
	testEmbedded(t, Options{Dir: dir, Now: newClock().Now})
	opts := Options{Backend: BackendEmbedded, Dir: dir}
	_, err := Open(opts) // waits bbolt's lock timeout, 1s, then refuses
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open of one file: %v, want in use", err)
	}
}

// The idle expiry is rewritten (a write and a file sync) once per idle/16
// of use, not on every Require.
func TestEmbeddedRequireRewritesTheExpiryOncePerSixteenthOfIdle(t *testing.T) {
	clock := newClock()
	s := testEmbedded(t, Options{Dir: t.TempDir(), Now: clock.Now})
	grain := idle / 16
	if _, err := s.Claim(ctx, "c1", alice, idle, 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at      time.Duration
		wantExp time.Duration // since epoch
	}{
		{time.Second, idle},
		{grain - time.Millisecond, idle},
		{grain, grain + idle},
		{grain + time.Second, grain + idle},
		{2*grain + time.Millisecond, 2*grain + time.Millisecond + idle},
	} {
		clock.Set(epoch.Add(c.at))
		if got, err := s.Require(ctx, "c1", alice, idle); err != nil || got != Yours {
			t.Fatalf("at %v: Require = %v, %v", c.at, got, err)
		}
		if got := storedExpiry(t, s, "c1"); !got.Equal(epoch.Add(c.wantExp)) {
			t.Errorf("at %v: stored expiry %v after epoch, want %v", c.at, got.Sub(epoch), c.wantExp)
		}
	}
}

func storedExpiry(t *testing.T, s *embedded, channel string) time.Time {
	t.Helper()
	var exp int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		exp, _, err = ownershipOf(tx.Bucket(bucketChannels).Get([]byte(channel)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.UnixMilli(exp).UTC()
}

func TestEmbeddedSweepDropsExpiredRecordsBoundedPerSweep(t *testing.T) {
	clock := newClock()
	s := testEmbedded(t, Options{Dir: t.TempDir(), Now: clock.Now, SweepBatch: 4})
	for i := range 6 {
		key := string(rune('a' + i))
		until := epoch.Add(time.Minute)
		if i == 5 {
			until = epoch.Add(time.Hour) // still live at the sweep
		}
		if _, err := s.Remember(ctx, key, until); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Claim(ctx, "c1", alice, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	at := millis(epoch.Add(2 * time.Minute))
	var drops []int
	for range 3 {
		n, err := s.sweep(at)
		if err != nil {
			t.Fatal(err)
		}
		drops = append(drops, n)
	}
	// Sweep 1 drops the channel, its owner entry and replay keys a-d (its
	// bound of 4), sweep 2 looks at e and f and drops e, sweep 3 starts
	// again at the first key and finds only f, still live.
	if want := []int{6, 1, 0}; !equalInts(drops, want) {
		t.Errorf("dropped per sweep %v, want %v", drops, want)
	}
	counts := map[string]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			counts[string(b)] = tx.Bucket(b).Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"channels": 0, "owners": 0, "replay": 1, "revocations": 0}; !equalCounts(counts, want) {
		t.Errorf("records left %v, want %v", counts, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestEmbeddedCorruptRecordIsUnavailableNotACrash(t *testing.T) {
	s := testEmbedded(t, Options{Dir: t.TempDir(), Now: newClock().Now})
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketChannels).Put([]byte("c1"), []byte{1, 2})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Require(ctx, "c1", alice, idle); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Require of a corrupt record: %v, want ErrUnavailable", err)
	}
	if _, err := s.Claim(ctx, "c1", alice, idle, 1); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Claim of a corrupt record: %v, want ErrUnavailable", err)
	}
	if h := s.Health(); h.Healthy || h.LastError == "" {
		t.Errorf("Health = %+v, want unhealthy with the error", h)
	}
}

// A write that cannot get the writer lock (held here by a transaction the
// test keeps open, as a stuck disk would) fails within Options.Timeout.
func TestEmbeddedSlowWriteFailsWithinTheTimeout(t *testing.T) {
	s := testEmbedded(t, Options{Dir: t.TempDir(), Now: newClock().Now, Timeout: 50 * time.Millisecond})
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Claim(ctx, "c1", alice, idle, 1)
	if rerr := tx.Rollback(); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Claim while the writer lock is held: %v, want ErrUnavailable", err)
	}
}

func TestEmbeddedOptionsAreChecked(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
		want string
	}{
		{"no directory", Options{}, "state.dir"},
		{"unknown backend", Options{Backend: "etcd", Dir: "x"}, "state.backend"},
		{"negative timeout", Options{Dir: "x", Timeout: -time.Second}, "state.timeout"},
		{"negative sweep batch", Options{Dir: "x", SweepBatch: -1}, "state.sweep_batch"},
		{"redis without address", Options{Backend: BackendRedis}, "state.redis.address"},
		{"poll not shorter than the stale bound", Options{Backend: BackendRedis, Redis: RedisOptions{Address: "/x"},
			RevocationPoll: time.Second, StaleBound: time.Second}, "state.revocation_poll"},
		{"redis address neither", Options{Backend: BackendRedis, Redis: RedisOptions{Address: "localhost"}}, "state.redis.address"},
	} {
		_, err := Open(c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Open = %v, want an error naming %s", c.name, err, c.want)
		}
	}
}

// The embedded limiter forgets the least recently used bucket past
// MaxRateKeys: a forgotten key starts again full.
func TestEmbeddedLimiterRemembersAtMostMaxRateKeys(t *testing.T) {
	s := testEmbedded(t, Options{Dir: t.TempDir(), Now: newClock().Now, MaxRateKeys: 2})
	hourly := Limit{PerSecond: 1.0 / 3600, Burst: 1}
	for _, c := range []struct {
		key  string
		want bool
	}{
		{"a", true}, {"b", true}, {"a", false}, // a is now the most recently used
		{"c", true},  // forgets b
		{"a", false}, // still remembered, still empty
		{"b", true},  // forgotten, so full again
	} {
		if ok, _, err := s.Allow(ctx, c.key, hourly); err != nil || ok != c.want {
			t.Fatalf("Allow(%s) = %v, %v; want %v", c.key, ok, err, c.want)
		}
	}
}

// A limit changed by a reload starts its key's bucket again.
func TestEmbeddedLimiterTakesANewLimitAtOnce(t *testing.T) {
	s := testEmbedded(t, Options{Dir: t.TempDir(), Now: newClock().Now})
	one := Limit{PerSecond: 1.0 / 3600, Burst: 1}
	three := Limit{PerSecond: 1.0 / 3600, Burst: 3}
	for i, c := range []struct {
		limit Limit
		want  bool
	}{{one, true}, {one, false}, {three, true}, {three, true}, {three, true}, {three, false}} {
		if ok, _, err := s.Allow(ctx, "k", c.limit); err != nil || ok != c.want {
			t.Fatalf("call %d: Allow = %v, %v; want %v", i, ok, err, c.want)
		}
	}
}
