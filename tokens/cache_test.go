package tokens

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// vfCounting is a Verifier whose cache hooks count.
type vfCounting struct {
	*Verifier
	hits, misses atomic.Int64
}

func (f *vfFixture) countingVerifier(t testing.TB, edit ...func(*Config)) *vfCounting {
	c := &vfCounting{}
	edit = append(edit, func(cfg *Config) {
		cfg.Hooks.OnCacheHit = func() { c.hits.Add(1) }
		cfg.Hooks.OnCacheMiss = func() { c.misses.Add(1) }
	})
	c.Verifier = f.verifier(t, edit...)
	return c
}

// TestCacheHitDoesNoSignatureWork: the second presentation of a token is
// answered from the cache, with no signature verification.
func TestCacheHitDoesNoSignatureWork(t *testing.T) {
	f := newVFFixture(t)
	v := f.countingVerifier(t)
	for _, raw := range []string{
		f.xbs(t, f.xbsClaims()), f.guest(t, f.guestClaims()), f.sat(t, f.satClaims()), f.access(t, f.accessClaims(t)),
	} {
		before := v.sigChecks.Load()
		first, err := v.Verify(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			again, err := v.Verify(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			if again != first {
				t.Fatal("a hit returned another token")
			}
		}
		if n := v.sigChecks.Load() - before; n != 1 {
			t.Fatalf("%s: %d signature checks for 4 verifications, want 1", first.Kind, n)
		}
	}
	if h, m := v.hits.Load(), v.misses.Load(); h != 12 || m != 4 {
		t.Fatalf("hooks: %d hits %d misses, want 12 and 4", h, m)
	}
}

// TestCachedTokenStillMeetsVerifyKind: a hit is subject to the kind check.
func TestCachedTokenStillMeetsVerifyKind(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	raw := f.access(t, f.accessClaims(t))
	if _, err := v.VerifyKind(context.Background(), raw, KindAccess); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyKind(context.Background(), raw, KindGuest); CodeOf(err) != CodeWrongKind {
		t.Fatalf("cached access token at the login exchange: %v, want wrong_kind", err)
	}
}

// TestCacheEntryExpiresWithTheToken: a cached token is good exactly as
// long as an uncached one would be: until exp plus the leeway.
func TestCacheEntryExpiresWithTheToken(t *testing.T) {
	f := newVFFixture(t)
	v := f.countingVerifier(t)
	raw := f.guest(t, vfWith(f.guestClaims(), "exp", f.unix(30*time.Second)))
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(89 * time.Second) // exp + 59s: inside the leeway
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("inside the leeway: %v", err)
	}
	if v.hits.Load() != 1 {
		t.Fatalf("inside the leeway: %d hits, want 1", v.hits.Load())
	}
	f.clock.Advance(time.Second) // exp + 60s
	if _, err := v.Verify(context.Background(), raw); CodeOf(err) != CodeExpired {
		t.Fatalf("past the leeway: %v, want expired", err)
	}
	if v.hits.Load() != 1 || v.misses.Load() != 2 {
		t.Fatalf("past the leeway: %d hits %d misses, want the entry dropped", v.hits.Load(), v.misses.Load())
	}
}

// TestCacheRechecksNotBefore: if the clock goes back before the token's
// iat (beyond the leeway), the cached token is not served.
func TestCacheRechecksNotBefore(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	raw := f.sat(t, f.satClaims())
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(-2 * time.Minute)
	if _, err := v.Verify(context.Background(), raw); CodeOf(err) != CodeNotYetValid {
		t.Fatalf("clock went back: %v, want not_yet_valid", err)
	}
}

// TestLastingFailuresAreAnsweredWithoutASignatureCheck: a token that
// failed for a reason the same bytes never get past (a bad signature, an
// exp in the past) is turned away again with the same error and no
// signature check. One that time can make good (not yet valid, a guest
// exp too far ahead) is checked on every presentation, and passes once
// its time comes.
func TestLastingFailuresAreAnsweredWithoutASignatureCheck(t *testing.T) {
	f := newVFFixture(t)
	badSig := func(t *testing.T) string {
		return vfSign(t, jwa.HS256, []byte(f.keys.guestB64), map[string]any{"alg": "HS256", "typ": "JWT"}, f.guestClaims())
	}
	expired := func(t *testing.T) string {
		return f.sat(t, vfWith(f.satClaims(), "iat", f.unix(-2*time.Hour), "exp", f.unix(-time.Hour)))
	}
	notYet := func(t *testing.T) string {
		return f.sat(t, vfWith(f.satClaims(), "nbf", f.unix(10*time.Minute)))
	}
	tooFar := func(t *testing.T) string {
		return f.guest(t, vfWith(f.guestClaims(), "exp", f.unix(DefaultGuestMaxLifetime+10*time.Minute)))
	}
	for _, tc := range []struct {
		name       string
		raw        func(*testing.T) string
		code       string
		wantChecks uint64 // signature checks for 3 presentations
	}{
		{"bad signature", badSig, CodeBadSignature, 1},
		{"expired", expired, CodeExpired, 1},
		{"not yet valid", notYet, CodeNotYetValid, 3},
		{"guest exp too far ahead", tooFar, CodeBadClaims, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := f.verifier(t)
			raw := tc.raw(t)
			var first error
			for i := range 3 {
				_, err := v.Verify(context.Background(), raw)
				if CodeOf(err) != tc.code {
					t.Fatalf("presentation %d: %v, want %s", i+1, err, tc.code)
				}
				if i == 0 {
					first = err
				} else if err.Error() != first.Error() {
					t.Fatalf("presentation %d: %q, want the first answer %q", i+1, err, first)
				}
			}
			if n := v.sigChecks.Load(); n != tc.wantChecks {
				t.Fatalf("%d signature checks, want %d", n, tc.wantChecks)
			}
		})
	}

	t.Run("passes when its time comes", func(t *testing.T) {
		for _, raw := range []func(*testing.T) string{notYet, tooFar} {
			v := f.verifier(t)
			r := raw(t)
			if _, err := v.Verify(context.Background(), r); err == nil {
				t.Fatal("verified before its time")
			}
			f.clock.Advance(15 * time.Minute)
			if _, err := v.Verify(context.Background(), r); err != nil {
				t.Fatalf("after its time came: %v", err)
			}
			f.clock.Advance(-15 * time.Minute)
		}
	})
}

// TestRememberedExpiryIsCheckedAgainWhenTheClockGoesBack: an expired
// token remembered as such is verified again when the wall clock goes back
// before the failure, where it may be good.
func TestRememberedExpiryIsCheckedAgainWhenTheClockGoesBack(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	raw := f.sat(t, vfWith(f.satClaims(), "exp", f.unix(time.Minute)))
	f.clock.Advance(time.Hour)
	if _, err := v.Verify(context.Background(), raw); CodeOf(err) != CodeExpired {
		t.Fatalf("an hour later: %v, want expired", err)
	}
	f.clock.Advance(-time.Hour)
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("the clock back before exp: %v, want the token to verify", err)
	}
}

// TestRememberedBadSignatureIsCheckedAgainAfterAKeyChange: a failure is
// remembered under the key set version it failed with; when the issuer's
// keys change, the token is checked against the new keys.
func TestRememberedBadSignatureIsCheckedAgainAfterAKeyChange(t *testing.T) {
	f := newVFFixture(t)
	body := func(key *rsa.PublicKey) string {
		b, err := json.Marshal(vfPublicSet(t, key, "k1", jwa.RS256))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := newKSServer(t, body(&other.PublicKey)) // not the key the token is signed with
	v := f.countingVerifier(t, func(c *Config) {
		c.Issuers[0].PublicKeys = nil
		c.Issuers[0].Keys = KeySource{URL: srv.URL + "/jwks.json", MinRefetch: time.Millisecond}
		c.HTTPClient = srv.Client()
	})
	raw := vfSign(t, jwa.RS256, f.keys.rsa, map[string]any{"alg": "RS256", "kid": "k1"}, f.xbsClaims())
	for range 2 {
		if _, err := v.Verify(context.Background(), raw); CodeOf(err) != CodeBadSignature {
			t.Fatalf("under the other key: %v, want bad_signature", err)
		}
	}
	if n := v.sigChecks.Load(); n != 1 {
		t.Fatalf("%d signature checks, want 1", n)
	}

	// The issuer publishes the token's key under the same kid; a token with
	// an unknown kid makes the key set refetch (once MinRefetch has passed
	// since the start fetch, by the verifier's clock).
	srv.set(body(&f.keys.rsa.PublicKey))
	f.clock.Advance(time.Second)
	unknown := vfSign(t, jwa.RS256, f.keys.rsa, map[string]any{"alg": "RS256", "kid": "k2"}, f.xbsClaims())
	if _, err := v.Verify(context.Background(), unknown); CodeOf(err) != CodeUnknownKey {
		t.Fatalf("kid k2: %v, want unknown_key", err)
	}
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("after the key change: %v, want the token to verify", err)
	}
}

// TestNewVerifierStartsWithAnEmptyCache: a configuration change (a new
// Verifier) never serves what the old one verified.
func TestNewVerifierStartsWithAnEmptyCache(t *testing.T) {
	f := newVFFixture(t)
	raw := f.guest(t, f.guestClaims())
	if _, err := f.verifier(t).Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	v2 := f.verifier(t)
	if _, err := v2.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if v2.sigChecks.Load() != 1 {
		t.Fatal("the new Verifier answered from another's cache")
	}
}

// TestCacheIsBounded: the least recently used entry goes when the cache is
// full; with CacheSize < 0 nothing is cached.
func TestCacheIsBounded(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t, func(c *Config) { c.CacheSize = 2 })
	a := f.guest(t, vfWith(f.guestClaims(), "sub", "a"))
	b := f.guest(t, vfWith(f.guestClaims(), "sub", "b"))
	c := f.guest(t, vfWith(f.guestClaims(), "sub", "c"))
	for _, raw := range []string{a, b, c, c, b, a} {
		if _, err := v.Verify(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.sigChecks.Load(); n != 4 { // a, b, c, then a again after its eviction
		t.Fatalf("%d signature checks, want 4", n)
	}

	off := f.verifier(t, func(c *Config) { c.CacheSize = -1 })
	for range 3 {
		if _, err := off.Verify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	if n := off.sigChecks.Load(); n != 3 {
		t.Fatalf("cache off: %d signature checks, want 3", n)
	}
}

// TestConcurrentMissesShareOneVerification: many requests with the same
// new token do (nearly) one verification between them; -race checks the
// cache's locking.
func TestConcurrentMissesShareOneVerification(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	raw := f.xbs(t, f.xbsClaims())
	other := f.sat(t, f.satClaims())
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), raw)
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), other)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := v.sigChecks.Load(); c >= n {
		t.Fatalf("%d signature checks for %d requests of 2 tokens", c, 2*n)
	}
}

// TestCacheIsPurgedWhenKeysChange: when an issuer's JWKS changes, nothing
// verified with the old keys is served from the cache.
func TestCacheIsPurgedWhenKeysChange(t *testing.T) {
	f := newVFFixture(t)
	old := vfPublicSet(t, &f.keys.rsa.PublicKey, "old", jwa.RS256)
	next := vfPublicSet(t, &f.keys.rsa.PublicKey, "new", jwa.RS256)
	var serving atomic.Pointer[jwk.Set]
	serving.Store(&old)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		b, _ := json.Marshal(*serving.Load())
		w.Write(b)
	}))
	defer srv.Close()
	v := f.countingVerifier(t, func(c *Config) {
		c.Issuers[0].PublicKeys = nil
		c.Issuers[0].Keys = KeySource{URL: srv.URL + "/jwks.json", MinRefetch: time.Millisecond}
		c.HTTPClient = srv.Client()
	})
	header := func(kid string) map[string]any { return map[string]any{"alg": "RS256", "kid": kid} }
	tokOld := vfSign(t, jwa.RS256, f.keys.rsa, header("old"), f.xbsClaims())
	tokNew := vfSign(t, jwa.RS256, f.keys.rsa, header("new"), f.xbsClaims())

	// Three times: a first verification that made the key set fetch is
	// stamped with the version before the fetch, so it may be verified
	// once more before it is served from the cache.
	for range 3 {
		if _, err := v.Verify(context.Background(), tokOld); err != nil {
			t.Fatalf("old key: %v", err)
		}
	}
	if v.hits.Load() == 0 {
		t.Fatal("the token of the current key was never served from the cache")
	}

	// Rotate: the new kid is unknown, which makes the key set refetch once
	// MinRefetch has passed since the start fetch.
	serving.Store(&next)
	f.clock.Advance(time.Second)
	if _, err := v.Verify(context.Background(), tokNew); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	hits := v.hits.Load()
	if _, err := v.Verify(context.Background(), tokOld); CodeOf(err) != CodeUnknownKey {
		t.Fatalf("token of the retired key after rotation: %v, want unknown_key", err)
	}
	if v.hits.Load() != hits {
		t.Fatal("token of the retired key served from the cache")
	}
}

func TestSumTokenIsSHA256OfTheToken(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 257, 1000, 4096} {
		raw := strings.Repeat("a.b-", n/4+1)[:n]
		if got, want := sumToken(raw), sha256.Sum256([]byte(raw)); got != want {
			t.Fatalf("sumToken of %d bytes = %x, want %x", n, got, want)
		}
	}
}

// TestWaiterOnASharedVerificationGetsItsOwnTimeCheck: a request that joins
// a verification already in flight (waiting on a JWKS fetch) is answered
// at its own time, as an uncached verification would be: a token that
// expired before that request came is refused, even though the request
// that started the verification, earlier, accepts it.
func TestWaiterOnASharedVerificationGetsItsOwnTimeCheck(t *testing.T) {
	f := newVFFixture(t)
	body := func(kid string) string {
		b, err := json.Marshal(vfPublicSet(t, &f.keys.rsa.PublicKey, kid, jwa.RS256))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	srv := newKSServer(t, body("old"))
	v := f.countingVerifier(t, func(c *Config) {
		c.Issuers[0].PublicKeys = nil
		c.Issuers[0].Keys = KeySource{URL: srv.URL + "/jwks.json", MinRefetch: time.Millisecond}
		c.HTTPClient = srv.Client()
	})
	raw := vfSign(t, jwa.RS256, f.keys.rsa, map[string]any{"alg": "RS256", "kid": "new"},
		vfWith(f.xbsClaims(), "exp", f.unix(time.Minute)))

	// The unknown kid makes the first request refetch (once MinRefetch has
	// passed since the start fetch, by the verifier's clock); the fetch
	// waits at the gate.
	f.clock.Advance(time.Second)
	srv.set(body("new"))
	gate := make(chan struct{})
	srv.gate.Store(&gate)
	first := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), raw)
		first <- err
	}()
	// Bounded polls for a state, never a measure of time: the refetch goes
	// over real loopback HTTP, and the second request must have missed the
	// cache while the first one's fetch is held.
	deadline := time.Now().Add(10 * time.Second)
	for srv.hits.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the refetch never started")
		}
		time.Sleep(time.Millisecond)
	}

	// The token expires (beyond the leeway); a second request comes.
	f.clock.Advance(time.Hour)
	second := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), raw)
		second <- err
	}()
	for v.misses.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second request never missed the cache")
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)

	if err := <-first; err != nil {
		t.Fatalf("the request made before exp: %v", err)
	}
	if err := <-second; CodeOf(err) != CodeExpired {
		t.Fatalf("the request made after exp: %v, want expired", err)
	}
}

// TestCacheRecheckedWhenTheClockGoesBack: a cached token is served only at
// or after the time it was verified. Before that (the clock went back) it
// is verified again, as every rule that reads the clock may now answer
// otherwise: here a guest token whose exp, from the earlier time, is
// further ahead than the issuer's MaxLifetime.
func TestCacheRecheckedWhenTheClockGoesBack(t *testing.T) {
	f := newVFFixture(t)
	v := f.verifier(t)
	raw := f.guest(t, vfWith(f.guestClaims(), "exp", f.unix(DefaultGuestMaxLifetime)))
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(-10 * time.Minute)
	if _, err := v.Verify(context.Background(), raw); CodeOf(err) != CodeBadClaims {
		t.Fatalf("clock went back past the guest's MaxLifetime: %v, want bad_claims", err)
	}
	uncached := f.verifier(t, func(c *Config) { c.CacheSize = -1 })
	if _, err := uncached.Verify(context.Background(), raw); CodeOf(err) != CodeBadClaims {
		t.Fatalf("uncached: %v, want bad_claims", err)
	}
}
