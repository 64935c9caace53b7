package tokens

import (
	"context"
	"crypto/sha256"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// tokenCache remembers tokens that verified, so that a client presenting
// the same token on every request costs one hash and one map look-up.
//
// It is keyed by SHA-256 of the raw token: the same bytes verify the same
// way under the same configuration and keys, except for time, which every
// hit re-checks. An entry never outlives the token's exp, and none survives
// a change of the key set that vouched for it. The cache belongs to one
// Verifier: a new configuration starts empty.
//
// It also remembers, apart and in fewer entries, tokens that failed for a
// reason the same bytes can never get past under the same configuration
// and keys (see lastingFailure): a client retrying a token that expired, or
// one whose signature is bad, is turned away without a signature check each
// time. A failure that time or a key fetch could change (not yet valid, an
// unknown kid, keys unavailable) is verified again on every request. The
// failures have their own bound, so tokens that fail cannot push tokens
// that verified out of the cache.
type tokenCache struct {
	entries  *lru.Cache[[sha256.Size]byte, *cacheEntry]
	failures *lru.Cache[[sha256.Size]byte, *failureEntry]
	// inflight lets concurrent misses of one token share one verification;
	// misses of different tokens never wait on each other.
	inflight singleflight.Group
	// keysSum is the sum of the key set versions the entries were verified
	// under; when it moves, every entry is dropped at once.
	keysSum atomic.Uint64
}

type cacheEntry struct {
	tok *Token
	verified
}

// failureEntry is a verification that failed for a lasting reason: the
// error, and the key set version and time it failed under.
type failureEntry struct {
	err error
	verified
}

func newTokenCache(size int) (*tokenCache, error) {
	entries, err := lru.New[[sha256.Size]byte, *cacheEntry](size)
	if err != nil {
		return nil, err
	}
	failures, err := lru.New[[sha256.Size]byte, *failureEntry](max(size/4, 1))
	if err != nil {
		return nil, err
	}
	return &tokenCache{entries: entries, failures: failures}, nil
}

// lastingFailure reports whether a verification that failed with err fails
// again for the same bytes under the same Verifier and key set versions at
// any later time. Each code is listed for where it comes from:
//
//   - malformed, untrusted_issuer, bad_algorithm, bad_header: the bytes
//     and the configuration alone;
//   - bad_signature: those and the key (a key set change drops the entry);
//   - expired: exp is in the past and time only moves on (a wall clock
//     that goes back before the failure drops the entry);
//   - bad_audience: the claims and the configuration alone.
//
// Not lasting: not_yet_valid and a guest's exp too far ahead (bad_claims)
// pass later; unknown_key and keys_unavailable may pass after a key fetch;
// every other code is verified again rather than reasoned about.
func lastingFailure(err error) bool {
	switch CodeOf(err) {
	case CodeMalformed, CodeUntrustedIssuer, CodeBadAlgorithm, CodeBadHeader, CodeBadSignature, CodeExpired, CodeBadAudience:
		return true
	}
	return false
}

// verify answers from the cache or verifies raw and caches the success.
func (c *tokenCache) verify(ctx context.Context, v *Verifier, raw string) (*Token, error) {
	key := sumToken(raw)
	now := v.now()
	if tok := c.get(key, now, v); tok != nil {
		if v.hooks.OnCacheHit != nil {
			v.hooks.OnCacheHit()
		}
		return tok, nil
	}
	if err := c.failed(key, now); err != nil {
		if v.hooks.OnCacheHit != nil {
			v.hooks.OnCacheHit()
		}
		return nil, err
	}
	if v.hooks.OnCacheMiss != nil {
		v.hooks.OnCacheMiss()
	}

	// The shared verification must not die with the first caller's
	// context: the others waiting on it would all fail with it. It runs
	// detached (key fetches have their own timeouts) and each caller stops
	// waiting when its own context ends.
	detached := context.WithoutCancel(ctx)
	ch := c.inflight.DoChan(string(key[:]), func() (any, error) {
		tok, meta, err := v.verify(detached, raw, now)
		if err != nil {
			if lastingFailure(err) {
				meta.at = now.Round(0)
				c.failures.Add(key, &failureEntry{err: err, verified: meta})
			}
			return nil, err
		}
		e := &cacheEntry{tok: tok, verified: meta}
		c.entries.Add(key, e)
		return e, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		// A caller that joined the verification late is held to its own
		// clock, as on a hit: the token may have expired while the first
		// caller's key fetch ran. Verified again, it gets the exact error.
		if e := r.Val.(*cacheEntry); !e.outOfTime(now, v.leeway) {
			return e.tok, nil
		}
		tok, _, err := v.verify(ctx, raw, now)
		return tok, err
	case <-ctx.Done():
		return nil, errorf(CodeKeysUnavailable, "verification abandoned: %v", ctx.Err())
	}
}

// tokenHasher is a SHA-256 state with the buffers sumToken needs, pooled
// so that hashing a token allocates nothing.
type tokenHasher struct {
	h   hash.Hash
	buf [256]byte
	sum [sha256.Size]byte
}

var tokenHashers = sync.Pool{New: func() any { return &tokenHasher{h: sha256.New()} }}

// sumToken is SHA-256(raw) without copying the whole token into a new
// byte slice (sha256.Sum256([]byte(raw)) allocates its length on every
// check): it is fed through a small buffer.
func sumToken(raw string) [sha256.Size]byte {
	th := tokenHashers.Get().(*tokenHasher)
	th.h.Reset()
	for len(raw) > 0 {
		n := copy(th.buf[:], raw)
		th.h.Write(th.buf[:n])
		raw = raw[n:]
	}
	th.h.Sum(th.sum[:0])
	sum := th.sum
	tokenHashers.Put(th)
	return sum
}

// get returns the cached token for key if it is still good at now.
func (c *tokenCache) get(key [sha256.Size]byte, now time.Time, v *Verifier) *Token {
	var sum uint64
	for _, ks := range v.keySets {
		sum += ks.Version()
	}
	if old := c.keysSum.Load(); old != sum && c.keysSum.CompareAndSwap(old, sum) {
		c.entries.Purge()
		c.failures.Purge()
	}
	e, ok := c.entries.Get(key)
	if !ok {
		return nil
	}
	if e.outOfTime(now, v.leeway) || e.keys != nil && e.keys.Version() != e.keyVersion { // the keys changed
		c.entries.Remove(key)
		return nil
	}
	return e.tok
}

// failed returns the lasting failure of key when one is remembered and
// still holds at now (get has already dropped every entry of an older key
// set sum).
func (c *tokenCache) failed(key [sha256.Size]byte, now time.Time) error {
	f, ok := c.failures.Get(key)
	if !ok {
		return nil
	}
	if now.Before(f.at) || f.keys != nil && f.keys.Version() != f.keyVersion {
		// The clock went back before the failure, or the keys changed.
		c.failures.Remove(key)
		return nil
	}
	return f.err
}

// outOfTime reports whether the verification may not answer for now: the
// token expired (RFC 7519 §4.1.4, as on a miss), or now is before the time
// it was verified at (the clock went back). Every other rule that reads the
// clock (nbf, iat, an entry's MaxLifetime) holds at any time after one it
// held at, so those two cover them all.
func (e *cacheEntry) outOfTime(now time.Time, leeway time.Duration) bool {
	return !now.Before(e.tok.ExpiresAt.Add(leeway)) || now.Before(e.at)
}
