package config

import (
	"path/filepath"
)

// Shadow is a candidate policy evaluated beside the live one, off the
// answer's path: its decisions are compared with the live ones, counted
// (guestgate_shadow_decisions_total{live,shadow}) and, where they differ,
// logged, but they never change or slow an answer. Promoting it is moving
// its files into the live policy directory (docs/shadow.md).
type Shadow struct {
	// Dir is the candidate policy directory, read and hot-reloaded as
	// policy.dir is, with policy.query as its decision. Empty: no shadow.
	Dir string `yaml:"dir"`
	// Sample is the fraction of checks the shadow also decides, 0 to 1.
	// Empty: 1 (every check) when dir is set.
	Sample *float64 `yaml:"sample"`
	// Queue bounds the checks waiting for the shadow: when the shadow
	// falls behind, further checks are not shadowed and are counted as
	// dropped (guestgate_shadow_dropped_total). Empty: 1024.
	Queue int `yaml:"queue"`
}

// DefaultShadowQueue is policy.shadow.queue's default.
const DefaultShadowQueue = 1024

// Enabled says whether a shadow policy is configured.
func (s Shadow) Enabled() bool { return s.Dir != "" }

// SampleRate is Sample with its default.
func (s Shadow) SampleRate() float64 {
	if s.Sample == nil {
		return 1
	}
	return *s.Sample
}

func (s *Shadow) resolvePaths(abs func(*string)) { abs(&s.Dir) }

func (s *Shadow) applyDefaults() {
	if s.Enabled() && s.Queue == 0 {
		s.Queue = DefaultShadowQueue
	}
}

// validate adds every problem of the policy.shadow section; live is the
// live policy directory, which the shadow must not be.
func (s *Shadow) validate(live string, add func(key, format string, args ...any)) {
	if s.Sample != nil && (*s.Sample < 0 || *s.Sample > 1) {
		add("policy.shadow.sample", "must be between 0 and 1")
	}
	if s.Sample != nil && !s.Enabled() {
		add("policy.shadow.sample", "set policy.shadow.dir too: there is no shadow policy to sample")
	}
	if s.Queue < 0 || s.Queue > 1<<20 {
		add("policy.shadow.queue", "must be between 0 (the default, %d) and 1048576", DefaultShadowQueue)
	}
	if s.Enabled() && filepath.Clean(s.Dir) == filepath.Clean(live) {
		add("policy.shadow.dir", "is the live policy directory: a shadow is a different candidate policy")
	}
}

// Equal says whether two policy sections are the same (Policy holds a
// pointer, so == compares addresses, not settings).
func (p Policy) Equal(q Policy) bool {
	ps, qs := p.Shadow, q.Shadow
	p.Shadow, q.Shadow = Shadow{}, Shadow{}
	return p == q && ps.Dir == qs.Dir && ps.Queue == qs.Queue && ps.SampleRate() == qs.SampleRate()
}
