package issuer

import (
	"errors"
	"sync"
	"time"
)

var (
	errReplayed   = errors.New("signature seen before")
	errMemoryFull = errors.New("replay memory full")
)

// replayMemory remembers the SAT signatures each integration has used until
// their timestamp leaves the window. It is keyed on the decoded signature
// bytes, so sending the same signature in other hex letter case is still a
// replay. When an integration's memory is full it refuses new signatures
// rather than forget one that could still be replayed.
type replayMemory struct {
	mu       sync.Mutex
	byClient map[string]map[[32]byte]time.Time // client id -> signature -> forget after
}

func newReplayMemory() *replayMemory {
	return &replayMemory{byClient: make(map[string]map[[32]byte]time.Time)}
}

// record remembers sig of client until forgetAt, or says why it cannot:
// errReplayed when it was seen and may still be valid, errMemoryFull when
// capacity signatures of client are still remembered.
func (m *replayMemory) record(clientID string, sig [32]byte, forgetAt, now time.Time, capacity int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := m.byClient[clientID]
	if seen == nil {
		seen = make(map[[32]byte]time.Time)
		m.byClient[clientID] = seen
	}
	if until, ok := seen[sig]; ok && now.Before(until) {
		return errReplayed
	}
	if len(seen) >= capacity {
		// Sweep only when full: the sweep is linear, and the per-client
		// rate limit bounds how often a client reaches this point.
		for s, until := range seen {
			if !now.Before(until) {
				delete(seen, s)
			}
		}
		if len(seen) >= capacity {
			return errMemoryFull
		}
	}
	seen[sig] = forgetAt
	return nil
}
