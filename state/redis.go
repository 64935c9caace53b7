package state

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// redisStore keeps the store in one Redis primary, shared by every
// replica. Each operation is one script run (one round trip), atomic on
// the server.
//
// Reconnecting is go-redis's: a failed command is retried (3 times, with
// exponential backoff from 10ms) within the operation's timeout, each
// retry dialing anew, and once PoolSize dials have failed the pool fails
// fast and probes the server once a second until it answers.
type redisStore struct {
	opts    Options
	rdb     *redis.Client
	prefix  string
	limiter *redisLimiter
	cache   *ownershipCache
	revoked revocationSet
	health  healthTracker
	closed  atomic.Bool
	hooks   redisHooks

	// Touched only by syncRevocations, which one goroutine runs at a time.
	revVersion     string
	pollsSinceFull int

	stop chan struct{}
	done chan struct{}
}

// redisHooks let tests drive the background work.
type redisHooks struct {
	noPoll    bool            // start no revocation poller
	afterSync func(err error) // called after each poll
	onDial    func()          // called after each connection dialed
}

func openRedis(opts Options, hooks redisHooks) (*redisStore, error) {
	silenceRedisLog()
	ro := opts.Redis
	network, addr := "tcp", ro.Address
	switch {
	case strings.HasPrefix(addr, "unix://"):
		network, addr = "unix", strings.TrimPrefix(addr, "unix://")
	case strings.HasPrefix(addr, "/"):
		network = "unix"
	default:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("state.redis.address: %q is neither host:port nor a unix socket path", addr)
		}
	}
	s := &redisStore{
		opts:   opts,
		prefix: ro.KeyPrefix,
		health: healthTracker{backend: BackendRedis},
		hooks:  hooks,
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
	s.rdb = redis.NewClient(&redis.Options{
		Network:      network,
		Addr:         addr,
		Username:     ro.Username,
		Password:     ro.Password,
		DB:           ro.DB,
		TLSConfig:    ro.TLS,
		DialTimeout:  ro.DialTimeout,
		ReadTimeout:  ro.ReadTimeout,
		WriteTimeout: ro.WriteTimeout,
		PoolSize:     ro.PoolSize,
		// The operation's context bounds every wait: for a connection from
		// the pool, the dial, the write and the read.
		ContextTimeoutEnabled: true,
		PoolTimeout:           opts.Timeout,
		// One dial per attempt: the command retries (with their backoff)
		// already dial again, and go-redis's five dials 100ms apart would
		// spend a whole operation's budget on a server that is not there,
		// hiding the dial's error behind a deadline.
		DialerRetries: 1,
	})
	s.rdb.AddHook(dialHook{s})
	s.limiter = &redisLimiter{lim: redis_rate.NewLimiter(s.rdb), prefix: s.prefix}
	cache, err := newOwnershipCache(opts.CacheSize, opts.StaleBound.Milliseconds())
	if err != nil {
		s.rdb.Close()
		return nil, err
	}
	s.cache = cache
	// A Redis not up yet is not a reason to refuse to start: the store
	// reports unhealthy and every check that needs it denies until it is.
	_ = s.syncRevocations(context.Background())
	if hooks.noPoll {
		close(s.done)
	} else {
		go s.pollLoop()
	}
	return s, nil
}

// dialHook counts reconnects and records failed dials.
type dialHook struct{ s *redisStore }

func (h dialHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.s.health.fail(err, h.s.opts.Now())
			return nil, err
		}
		h.s.health.dialed()
		if h.s.hooks.onDial != nil {
			h.s.hooks.onDial()
		}
		return c, nil
	}
}

func (dialHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (dialHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (s *redisStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	return s.rdb.Close()
}

func (s *redisStore) Health() Health {
	h := s.health.snapshot()
	h.RevocationsAt = time.UnixMilli(s.revoked.syncedAt.Load())
	return h
}

// begin bounds an operation by Options.Timeout.
func (s *redisStore) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, s.result(redis.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, s.result(err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	return ctx, cancel, nil
}

// result records the outcome of an operation in the health signal.
func (s *redisStore) result(err error) error {
	if err == nil {
		s.health.ok()
		return nil
	}
	s.health.fail(err, s.opts.Now())
	return unavailable(BackendRedis, err)
}

// Scripts take the caller's clock as an argument (ARGV "now"), so every
// expiry is decided on the same clock as the embedded store's; the key
// TTLs they set are relative and only let Redis drop what has ended.
// Numbers cross as decimal strings: Lua's number formatting would write
// large integers in exponent form.

// ownershipRefresh restarts the idle expiry of KEYS[1] (the channel) and
// its entry in KEYS[2] (the owner's channels, scored by expiry).
const ownershipRefresh = `
local function refresh()
  redis.call('HSET', KEYS[1], 'o', ARGV[1], 'e', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[5]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
  end
end
local now = tonumber(ARGV[3])
local cur = redis.call('HMGET', KEYS[1], 'o', 'e')
local exp = tonumber(cur[2])
local live = cur[1] and exp and now < exp
`

// claimScript: ARGV owner, channel, now, expiry, idle ms, max per owner.
var claimScript = redis.NewScript(ownershipRefresh + `
if live then
  if cur[1] ~= ARGV[1] then return 3 end
  refresh()
  return 2
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return 4 end
refresh()
return 1
`)

// requireScript: ARGV owner, channel, now, expiry, idle ms.
var requireScript = redis.NewScript(ownershipRefresh + `
if not live then return 2 end
if cur[1] ~= ARGV[1] then return 3 end
refresh()
return 1
`)

// rememberScript: ARGV now, until, ttl ms.
var rememberScript = redis.NewScript(`
local exp = tonumber(redis.call('GET', KEYS[1]))
if exp and tonumber(ARGV[1]) < exp then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

func (s *redisStore) ownershipKeys(channel, owner string) []string {
	return []string{s.prefix + "own:c:" + channel, s.prefix + "own:o:" + owner}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// outcome reads a script's answer, one of 1..max.
func outcome(v any, err error, maxOutcome int64) (int64, error) {
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok || n < 1 || n > maxOutcome {
		return 0, fmt.Errorf("script answered %v", v)
	}
	return n, nil
}

func (s *redisStore) Claim(ctx context.Context, channel string, o Owner, idle time.Duration, maxPerOwner int) (ClaimOutcome, error) {
	if err := checkClaim(channel, o, idle, maxPerOwner); err != nil {
		return 0, err
	}
	now := millis(s.opts.Now())
	exp := now + idle.Milliseconds()
	owner := o.key()
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return s.claimFromCache(channel, owner, now, err)
	}
	defer cancel()
	v, err := claimScript.Run(ctx, s.rdb, s.ownershipKeys(channel, owner),
		owner, channel, itoa(now), itoa(exp), itoa(idle.Milliseconds()), strconv.Itoa(maxPerOwner)).Result()
	n, err := outcome(v, err, int64(OverLimit))
	if err != nil {
		return s.claimFromCache(channel, owner, now, s.result(err))
	}
	s.health.ok()
	out := ClaimOutcome(n)
	if out == Claimed || out == AlreadyYours {
		s.cache.confirmed(channel, owner, exp, now)
	} else if out == OwnedByAnother {
		s.cache.contradicted(channel, owner, true)
	}
	return out, nil
}

// claimFromCache answers a claim Redis did not answer: a channel the cache
// knows is the claimer's is AlreadyYours; anything else fails with err.
func (s *redisStore) claimFromCache(channel, owner string, now int64, err error) (ClaimOutcome, error) {
	if !s.closed.Load() && s.cache.answers(channel, owner, now) {
		s.health.cacheAnswers.Add(1)
		return AlreadyYours, nil
	}
	return 0, err
}

// Require always reaches Redis (the refresh rides on the read's round
// trip); the cache answers only when Redis does not.
func (s *redisStore) Require(ctx context.Context, channel string, o Owner, idle time.Duration) (RequireOutcome, error) {
	if err := checkOwnership(channel, o, idle); err != nil {
		return 0, err
	}
	now := millis(s.opts.Now())
	exp := now + idle.Milliseconds()
	owner := o.key()
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return s.requireFromCache(channel, owner, now, err)
	}
	defer cancel()
	v, err := requireScript.Run(ctx, s.rdb, s.ownershipKeys(channel, owner),
		owner, channel, itoa(now), itoa(exp), itoa(idle.Milliseconds())).Result()
	n, err := outcome(v, err, int64(OwnedByOther))
	if err != nil {
		return s.requireFromCache(channel, owner, now, s.result(err))
	}
	s.health.ok()
	out := RequireOutcome(n)
	if out == Yours {
		s.cache.confirmed(channel, owner, exp, now)
	} else {
		s.cache.contradicted(channel, owner, out == OwnedByOther)
	}
	return out, nil
}

func (s *redisStore) requireFromCache(channel, owner string, now int64, err error) (RequireOutcome, error) {
	if !s.closed.Load() && s.cache.answers(channel, owner, now) {
		s.health.cacheAnswers.Add(1)
		return Yours, nil
	}
	return 0, err
}

func (s *redisStore) Remember(ctx context.Context, key string, until time.Time) (bool, error) {
	now := s.opts.Now()
	if err := checkRemember(key, until, now); err != nil {
		return false, err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	ttl := millis(until) - millis(now)
	v, err := rememberScript.Run(ctx, s.rdb, []string{s.prefix + "seen:" + key},
		itoa(millis(now)), itoa(millis(until)), itoa(ttl)).Result()
	if err != nil {
		return false, s.result(err)
	}
	n, ok := v.(int64)
	if !ok || (n != 0 && n != 1) {
		return false, s.result(fmt.Errorf("replay script answered %v", v))
	}
	s.health.ok()
	return n == 1, nil
}

func (s *redisStore) Allow(ctx context.Context, key string, l Limit) (bool, time.Duration, error) {
	if err := checkLimit(key, l); err != nil {
		return false, 0, err
	}
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return false, 0, err
	}
	defer cancel()
	ok, retry, err := s.limiter.allow(ctx, key, l)
	if err != nil {
		return false, 0, s.result(err)
	}
	s.health.ok()
	return ok, retry, nil
}
