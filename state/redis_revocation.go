package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revocations on Redis: a hash P+"rev" (entry -> until, Unix ms) and a
// counter P+"rev:v" that every revocation bumps in the same script. Each
// client polls the counter every RevocationPoll and reads the whole hash
// when it moved, and every fullSyncEvery whatever it says.
//
// A poll, not pub/sub: pub/sub delivers at most once and says nothing of
// what was published while a connection was down, so it needs this same
// resync anyway. The poll alone meets the 1s bound (a GET per replica per
// 250ms is nothing to Redis), its success is what dates the snapshot (the
// staleness bound falls out of it), and it keeps no second, long-lived
// connection per replica.

// fullSyncEvery rereads the whole hash even when the counter did not move:
// a Redis restored from an old snapshot may show an old counter again.
const fullSyncEvery = 30 * time.Second

// revokeScript: ARGV entry, until.
var revokeScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if not cur or cur < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return redis.call('INCR', KEYS[2])
`)

// fetchScript reads the counter and the hash at one instant.
var fetchScript = redis.NewScript(`
return {redis.call('GET', KEYS[2]) or '0', redis.call('HGETALL', KEYS[1])}
`)

// pruneScript drops the given entries that have ended by ARGV[1].
var pruneScript = redis.NewScript(`
local n = 0
for i = 2, #ARGV do
  local until = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if until and until <= tonumber(ARGV[1]) then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
`)

func (s *redisStore) revocationKeys() []string {
	return []string{s.prefix + "rev", s.prefix + "rev:v"}
}

func (s *redisStore) Revoke(ctx context.Context, r Revocation) error {
	now := s.opts.Now()
	if err := checkRevocation(r, now); err != nil {
		return err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	k := revKey{r.Kind, r.Issuer, r.Value}
	if err := revokeScript.Run(ctx, s.rdb, s.revocationKeys(), k.encode(), itoa(millis(r.Until))).Err(); err != nil {
		return s.result(err)
	}
	s.health.ok()
	// In force here at once; the other replicas see it at their next poll.
	s.revoked.merge(map[revKey]int64{k: millis(r.Until)}, millis(now))
	return nil
}

func (s *redisStore) Revoked(ctx context.Context, t TokenRef) (bool, error) {
	if s.closed.Load() {
		return false, s.result(redis.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return false, s.result(err)
	}
	now := millis(s.opts.Now())
	synced := s.revoked.syncedAt.Load()
	if synced == 0 || now-synced > s.opts.StaleBound.Milliseconds() {
		return false, unavailable(BackendRedis, fmt.Errorf("revocations not read for over %v", s.opts.StaleBound))
	}
	return s.revoked.covers(t, now), nil
}

func (s *redisStore) pollLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.RevocationPoll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			err := s.syncRevocations(context.Background())
			if s.hooks.afterSync != nil {
				s.hooks.afterSync(err)
			}
		}
	}
}

// syncRevocations brings the snapshot up to Redis's deny-list. The
// snapshot is dated by when the sync began: every revocation written
// before then is in it.
func (s *redisStore) syncRevocations(ctx context.Context) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	start := millis(s.opts.Now())
	keys := s.revocationKeys()
	full := s.pollsSinceFull >= int(fullSyncEvery/s.opts.RevocationPoll)
	if !full {
		v, err := s.rdb.Get(ctx, keys[1]).Result()
		if errors.Is(err, redis.Nil) {
			v, err = "0", nil
		}
		if err != nil {
			return s.result(err)
		}
		if v == s.revVersion {
			s.pollsSinceFull++
			s.revoked.syncedAt.Store(start)
			return s.result(nil)
		}
	}
	res, err := fetchScript.Run(ctx, s.rdb, keys).Slice()
	if err != nil {
		return s.result(err)
	}
	version, entries, ended, err := parseRevocations(res, start)
	if err != nil {
		return s.result(err)
	}
	s.revoked.merge(entries, start)
	s.revoked.syncedAt.Store(start)
	s.revVersion, s.pollsSinceFull = version, 0
	if len(ended) > 0 {
		args := append([]any{itoa(start)}, ended...)
		if err := pruneScript.Run(ctx, s.rdb, keys[:1], args...).Err(); err != nil {
			return s.result(err)
		}
	}
	return s.result(nil)
}

// parseRevocations reads fetchScript's answer: the counter, the entries in
// force at now, and the fields of those ended. An entry this store could
// not have written fails the sync: the snapshot then goes stale and checks
// deny, rather than run on a deny-list read in part.
func parseRevocations(res []any, now int64) (string, map[revKey]int64, []any, error) {
	if len(res) != 2 {
		return "", nil, nil, fmt.Errorf("revocation read answered %d values", len(res))
	}
	version, ok := res[0].(string)
	pairs, ok2 := res[1].([]any)
	if !ok || !ok2 || len(pairs)%2 != 0 {
		return "", nil, nil, errors.New("revocation read answered out of shape")
	}
	entries := make(map[revKey]int64, len(pairs)/2)
	var ended []any
	for i := 0; i < len(pairs); i += 2 {
		field, ok := pairs[i].(string)
		value, ok2 := pairs[i+1].(string)
		if !ok || !ok2 {
			return "", nil, nil, errors.New("revocation entry out of shape")
		}
		k, err := decodeRevKey(field)
		if err != nil {
			return "", nil, nil, err
		}
		until, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return "", nil, nil, fmt.Errorf("revocation entry's end %q is not a number", value)
		}
		if until <= now {
			ended = append(ended, field)
			continue
		}
		entries[k] = until
	}
	return version, entries, ended, nil
}
