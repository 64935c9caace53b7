package main

import (
	"time"

	"github.com/guestgate/guestgate/config"
)

// stateReadiness is the state store in /readyz. A failing store does not
// make guestgate unready: the requests that need it are denied
// state_unavailable, every other request is answered as before.
type stateReadiness struct {
	// Store is "none", "embedded <dir>" or "redis <address>".
	Store       string    `json:"store"`
	Healthy     bool      `json:"healthy"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Reconnects and CacheAnswers are the Redis backend's.
	Reconnects   uint64 `json:"reconnects,omitempty"`
	CacheAnswers uint64 `json:"cache_answers,omitempty"`
}

func (s *sidecar) stateReadiness(cfg *config.Config) stateReadiness {
	rd := stateReadiness{Store: cfg.State.String()}
	if s.store == nil {
		return rd
	}
	h := s.store.Health()
	rd.Healthy, rd.LastError, rd.LastErrorAt, rd.Reconnects, rd.CacheAnswers = h.Healthy, h.LastError, h.LastErrorAt, h.Reconnects, h.CacheAnswers
	return rd
}
