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
// hit re-checks. Only successes are cached. An entry never outlives the
// token's exp, and none survives a change of the key set that vouched for
// it. The cache belongs to one Verifier: a new configuration starts empty.
type tokenCache struct {
	entries *lru.Cache[[sha256.Size]byte, *cacheEntry]
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

func newTokenCache(size int) (*tokenCache, error) {
	entries, err := lru.New[[sha256.Size]byte, *cacheEntry](size)
	if err != nil {
		return nil, err
	}
	return &tokenCache{entries: entries}, nil
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

// outOfTime reports whether the verification may not answer for now: the
// token expired (RFC 7519 §4.1.4, as on a miss), or now is before the time
// it was verified at (the clock went back). Every other rule that reads the
// clock (nbf, iat, a guest's MaxLifetime) holds at any time after one it
// held at, so those two cover them all.
func (e *cacheEntry) outOfTime(now time.Time, leeway time.Duration) bool {
	return !now.Before(e.tok.ExpiresAt.Add(leeway)) || now.Before(e.at)
}
