package state

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// memLimiter is the embedded store's limiter: a token bucket per key in
// memory, for at most a bounded number of keys, the least recently used
// forgotten first. Buckets are not written to the file: a write per
// request would cost a sync each, and a restart refills a bucket no faster
// than its own rate would.
type memLimiter struct {
	buckets *lru.Cache[string, *bucket]
}

type bucket struct {
	limit Limit
	lim   *rate.Limiter
}

func newMemLimiter(maxKeys int) (*memLimiter, error) {
	c, err := lru.New[string, *bucket](maxKeys)
	if err != nil {
		return nil, err
	}
	return &memLimiter{buckets: c}, nil
}

func (m *memLimiter) allow(key string, l Limit, now time.Time) (bool, time.Duration) {
	b, ok := m.buckets.Get(key)
	if !ok || b.limit != l {
		// A new key, or a limit changed by a reload: a fresh, full bucket.
		fresh := &bucket{limit: l, lim: rate.NewLimiter(rate.Limit(l.PerSecond), l.Burst)}
		if prev, found, _ := m.buckets.PeekOrAdd(key, fresh); found && prev.limit == l {
			b = prev
		} else {
			if found {
				m.buckets.Add(key, fresh)
			}
			b = fresh
		}
	}
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Hour
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// redisLimiter is the Redis store's limiter: redis_rate's GCRA script, on
// the Redis server's clock.
type redisLimiter struct {
	lim    *redis_rate.Limiter
	prefix string
}

func (r *redisLimiter) allow(ctx context.Context, key string, l Limit) (bool, time.Duration, error) {
	// GCRA's emission interval is Period/Rate: one token per 1/PerSecond.
	lim := redis_rate.Limit{Rate: 1, Burst: l.Burst, Period: time.Duration(float64(time.Second) / l.PerSecond)}
	res, err := r.lim.Allow(ctx, r.prefix+key, lim)
	if err != nil {
		return false, 0, err
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, res.RetryAfter, nil
}
