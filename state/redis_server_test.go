package state

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/guestgate/guestgate/internal/redistest"
)

// redisServer is a redis-server of the test's own (package redistest:
// one copy for every package's tests), with the store's helpers.
type redisServer struct {
	*redistest.Server
	prefixes atomic.Int64
}

// launchRedis starts a redis-server for t, stopped when t ends, or says why
// there is none.
func launchRedis(t testing.TB, extra ...string) (*redisServer, error) {
	t.Helper()
	srv, err := redistest.Start(t, extra...)
	if err != nil {
		return nil, err
	}
	return &redisServer{Server: srv}, nil
}

// startRedis is launchRedis for a test of the Redis backend alone.
func startRedis(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	srv, err := launchRedis(t, extra...)
	if err != nil {
		t.Skip(err)
	}
	return srv
}

// client opens a Redis store on the server; every client gets its own key
// prefix unless opts names one.
func (r *redisServer) client(t testing.TB, opts Options, hooks redisHooks) *redisStore {
	t.Helper()
	opts.Backend = BackendRedis
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	if opts.Redis.Address == "" {
		opts.Redis.Address = r.Socket
	}
	if opts.Redis.KeyPrefix == "" {
		opts.Redis.KeyPrefix = fmt.Sprintf("t%d:", r.prefixes.Add(1))
	}
	if err := opts.setDefaults(); err != nil {
		t.Fatal(err)
	}
	s, err := openRedis(opts, hooks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// admin is a plain client for a test to look at or drive the server.
func (r *redisServer) admin(t *testing.T, password string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: r.Socket, Password: password})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
