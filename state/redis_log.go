package state

import (
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
)

// go-redis logs through a logger of its own, to stderr in plain text: one
// line per failed dial of its pool, so one per request while Redis is down,
// beside guestgate's JSON log. The store already keeps the same failure
// (Health: /readyz, guestgate_state_healthy, the state_unavailable
// denials), so go-redis's lines are dropped. The logger is go-redis's
// process-wide one, set once, when the first Redis store opens.
var quietRedisLog sync.Once

func silenceRedisLog() {
	quietRedisLog.Do(func() { redis.SetLogger(&logging.VoidLogger{}) })
}
