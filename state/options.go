package state

import (
	"crypto/tls"
	"fmt"
	"time"
)

// Backends.
const (
	BackendEmbedded = "embedded"
	BackendRedis    = "redis"
)

// Defaults for the zero values of Options and RedisOptions.
const (
	DefaultTimeout        = 250 * time.Millisecond
	DefaultStaleBound     = time.Second
	DefaultRevocationPoll = 250 * time.Millisecond
	DefaultSweepEvery     = time.Minute
	DefaultSweepBatch     = 1000
	DefaultMaxRateKeys    = 10000
	DefaultCacheSize      = 10000
	DefaultKeyPrefix      = "guestgate:"
	DefaultRedisIOTimeout = time.Second
)

// Options configures a store. The config layer fills it from the state:
// block; the zero value of every field but Dir (embedded) and
// Redis.Address (redis) is a working default.
type Options struct {
	// Backend is BackendEmbedded or BackendRedis. Empty: embedded.
	Backend string
	// Dir holds the embedded store's file, state.db (created 0600; the
	// directory 0700 if missing). Required for embedded.
	Dir string
	// Redis configures the Redis backend.
	Redis RedisOptions
	// Timeout bounds every operation on the backend. Empty: 250ms.
	Timeout time.Duration
	// StaleBound bounds how old a local answer may be when the Redis
	// backend does not answer: the revocation snapshot and the cache of
	// ownerships. Empty: 1s.
	StaleBound time.Duration
	// RevocationPoll is how often each Redis client refreshes its
	// revocation snapshot; must be shorter than StaleBound. Empty: 250ms.
	RevocationPoll time.Duration
	// CacheSize bounds the Redis backend's local cache of ownerships.
	// Empty: 10000.
	CacheSize int
	// SweepEvery is how often the embedded store drops expired records;
	// each sweep looks at most SweepBatch records of each kind. Empty: 1m
	// and 1000.
	SweepEvery time.Duration
	SweepBatch int
	// MaxRateKeys bounds how many rate-limit buckets the embedded store
	// remembers (in memory: a restart refills them); the least recently
	// used is forgotten first. Empty: 10000.
	MaxRateKeys int
	// Now is the clock every expiry is decided with. Empty: time.Now.
	Now func() time.Time
}

// RedisOptions configures the Redis backend: one Redis primary
// (standalone, or the primary behind a managed endpoint). Redis Cluster is
// not supported: a claim touches the channel's key and the owner's in one
// script.
type RedisOptions struct {
	// Address is host:port, or a unix socket as /path or unix:///path.
	Address string
	// TLS, when set, is used for every connection (the config layer builds
	// it from its CA and client certificate files). Nil: plaintext.
	TLS *tls.Config
	// Username and Password authenticate (AUTH); empty: none. The config
	// layer reads the password from a file or the environment.
	Username string
	Password string
	// DB selects the database. Empty: 0.
	DB int
	// KeyPrefix starts every key, so deployments can share a Redis and an
	// ACL can name their keys (rate limits are under "rate:"+KeyPrefix,
	// the limiter library's own prefix). Empty: "guestgate:".
	KeyPrefix string
	// DialTimeout, ReadTimeout and WriteTimeout bound each connection
	// step; Options.Timeout bounds the whole operation whatever they say.
	// Empty: 1s each.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize bounds the open connections. Empty: go-redis's default, 10
	// per GOMAXPROCS.
	PoolSize int
}

func (o *Options) setDefaults() error {
	if o.Backend == "" {
		o.Backend = BackendEmbedded
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	def(&o.Timeout, DefaultTimeout)
	def(&o.StaleBound, DefaultStaleBound)
	def(&o.RevocationPoll, DefaultRevocationPoll)
	def(&o.SweepEvery, DefaultSweepEvery)
	defInt(&o.SweepBatch, DefaultSweepBatch)
	defInt(&o.MaxRateKeys, DefaultMaxRateKeys)
	defInt(&o.CacheSize, DefaultCacheSize)
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &o.Redis
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultKeyPrefix
	}
	def(&r.DialTimeout, DefaultRedisIOTimeout)
	def(&r.ReadTimeout, DefaultRedisIOTimeout)
	def(&r.WriteTimeout, DefaultRedisIOTimeout)

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"timeout", o.Timeout}, {"stale_bound", o.StaleBound}, {"revocation_poll", o.RevocationPoll},
		{"sweep_every", o.SweepEvery}, {"redis.dial_timeout", r.DialTimeout},
		{"redis.read_timeout", r.ReadTimeout}, {"redis.write_timeout", r.WriteTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("state.%s: %v is negative", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"sweep_batch", o.SweepBatch}, {"max_rate_keys", o.MaxRateKeys}, {"cache_size", o.CacheSize},
		{"redis.pool_size", r.PoolSize}, {"redis.db", r.DB},
	} {
		if n.v < 0 {
			return fmt.Errorf("state.%s: %d is negative", n.name, n.v)
		}
	}
	switch o.Backend {
	case BackendEmbedded:
		if o.Dir == "" {
			return fmt.Errorf("state.dir: required for the %s backend", BackendEmbedded)
		}
	case BackendRedis:
		if r.Address == "" {
			return fmt.Errorf("state.redis.address: required for the %s backend", BackendRedis)
		}
		if o.RevocationPoll >= o.StaleBound {
			return fmt.Errorf("state.revocation_poll (%v) must be shorter than state.stale_bound (%v)", o.RevocationPoll, o.StaleBound)
		}
	default:
		return fmt.Errorf("state.backend: %q is neither %s nor %s", o.Backend, BackendEmbedded, BackendRedis)
	}
	return nil
}
