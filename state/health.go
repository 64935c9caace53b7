package state

import (
	"fmt"
	"sync/atomic"
	"time"
)

// healthTracker records what Health reports. Its hot path, ok after a
// successful operation, is one atomic load.
type healthTracker struct {
	backend         string
	healthy         atomic.Bool
	last            atomic.Pointer[failure]
	failedSinceDial atomic.Bool
	reconnects      atomic.Uint64
	cacheAnswers    atomic.Uint64
}

type failure struct {
	msg string
	at  time.Time
}

func (h *healthTracker) ok() {
	if !h.healthy.Load() {
		h.healthy.Store(true)
	}
}

// fail records err, which callers have already stripped of secrets (no
// error of the backends' clients carries a password or a token).
func (h *healthTracker) fail(err error, at time.Time) {
	h.healthy.Store(false)
	h.failedSinceDial.Store(true)
	h.last.Store(&failure{msg: err.Error(), at: at})
}

// dialed counts a new connection as a reconnect when it follows a failure.
func (h *healthTracker) dialed() {
	if h.failedSinceDial.Swap(false) {
		h.reconnects.Add(1)
	}
}

func (h *healthTracker) snapshot() Health {
	out := Health{
		Backend:      h.backend,
		Healthy:      h.healthy.Load(),
		Reconnects:   h.reconnects.Load(),
		CacheAnswers: h.cacheAnswers.Load(),
	}
	if f := h.last.Load(); f != nil {
		out.LastError, out.LastErrorAt = f.msg, f.at
	}
	return out
}

// unavailable wraps a backend failure as ErrUnavailable.
func unavailable(backend string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, backend, err)
}
