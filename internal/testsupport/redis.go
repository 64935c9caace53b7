package testsupport

import (
	"testing"

	"github.com/guestgate/guestgate/internal/redistest"
)

// Redis is a redis-server of a test's own on a unix socket (package
// redistest): Socket is state.redis.address; Stop and Start stop it and
// start it again, keeping what it was told.
type Redis = redistest.Server

// StartRedis starts a redis-server for tb, stopped when tb ends, or says
// why there is none (redis-server is not installed).
func StartRedis(tb testing.TB) (*Redis, error) {
	tb.Helper()
	return redistest.Start(tb)
}
