package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// stateMetrics are the state store's and the ownership effects'.
type stateMetrics struct {
	ownership *prometheus.CounterVec

	mu     sync.Mutex
	health func() StateHealth // nil: no store
}

// StateHealth is what the metrics show of the state store (state.Health,
// without the package: metrics imports nothing of guestgate's).
type StateHealth struct {
	Backend      string
	Healthy      bool
	Reconnects   uint64
	CacheAnswers uint64
}

// Ownership outcomes besides the store's own answers.
var ownershipOutcomes = map[string][]string{
	"claim":   {"claimed", "already_yours", "owned_by_another", "over_limit", "unavailable", "not_applied"},
	"require": {"yours", "not_owned", "owned_by_other", "unavailable", "not_applied"},
}

func (m *Metrics) registerState() {
	s := &m.state
	s.ownership = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guestgate_ownership_outcomes_total",
		Help: "Ownership effects applied to allowed decisions, by need (claim, require) and the state store's outcome (unavailable: the store did not answer, denied state_unavailable).",
	}, []string{"need", "outcome"})
	for need, outs := range ownershipOutcomes {
		for _, o := range outs {
			s.ownership.WithLabelValues(need, o)
		}
	}
	healthy := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "guestgate_state_healthy",
		Help: "1 when the state store's last operation succeeded, 0 when it failed or no store is configured (state:).",
	}, func() float64 {
		h, ok := s.read()
		if ok && h.Healthy {
			return 1
		}
		return 0
	})
	reconnects := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "guestgate_state_reconnects_total",
		Help: "Connections to the state store dialed after a failure (redis).",
	}, func() float64 { h, _ := s.read(); return float64(h.Reconnects) })
	cacheAnswers := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "guestgate_state_cache_answers_total",
		Help: "Ownership requirements answered from the local cache while the state store failed (redis).",
	}, func() float64 { h, _ := s.read(); return float64(h.CacheAnswers) })
	m.reg.MustRegister(s.ownership, healthy, reconnects, cacheAnswers)
}

func (s *stateMetrics) read() (StateHealth, bool) {
	s.mu.Lock()
	f := s.health
	s.mu.Unlock()
	if f == nil {
		return StateHealth{}, false
	}
	return f(), true
}

// StateStore makes the state metrics read the store's health from f.
func (m *Metrics) StateStore(f func() StateHealth) {
	m.state.mu.Lock()
	m.state.health = f
	m.state.mu.Unlock()
}

// Ownership counts one applied ownership effect.
func (m *Metrics) Ownership(need, outcome string) {
	if _, ok := ownershipOutcomes[need]; !ok {
		need = OtherReason
	}
	m.state.ownership.WithLabelValues(need, outcome).Inc()
}
