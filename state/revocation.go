package state

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
)

// revKey names one deny-list entry in memory; a struct, so a check builds
// its keys without allocating.
type revKey struct {
	kind   Kind
	issuer string
	value  string
}

func (k revKey) encode() string { return revocationKey(k.kind, k.issuer, k.value) }

func decodeRevKey(s string) (revKey, error) {
	parts, ok := splitKey(s)
	if !ok || len(parts) != 3 {
		return revKey{}, fmt.Errorf("revocation entry %q is not one this store wrote", s)
	}
	k := revKey{Kind(parts[0]), parts[1], parts[2]}
	switch k.kind {
	case RevokeToken, RevokeSubject, RevokeWidget:
		return k, nil
	}
	return revKey{}, fmt.Errorf("revocation entry of unknown kind %q", parts[0])
}

// revocationSet is the local snapshot of the deny-list every check reads:
// an immutable map behind an atomic pointer, replaced whole on a change
// (revocations are rare, checks are not).
type revocationSet struct {
	mu      sync.Mutex // serialises writers
	entries atomic.Pointer[map[revKey]int64]
	// syncedAt is when (Unix ms) the snapshot was last known to hold every
	// entry of the backend; 0 before the first complete read.
	syncedAt atomic.Int64
}

// merge adds entries (key -> until, Unix ms), keeping the later end of an
// entry known twice and dropping those ended by now. Entries are never
// removed by a merge before they end, so an entry the backend lost (a
// Redis restarted empty) stays in force here until its end.
func (s *revocationSet) merge(add map[revKey]int64, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[revKey]int64)
	if cur := s.entries.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	for k, until := range add {
		if until > next[k] {
			next[k] = until
		}
	}
	maps.DeleteFunc(next, func(_ revKey, until int64) bool { return until <= now })
	s.entries.Store(&next)
}

func (s *revocationSet) covers(t TokenRef, now int64) bool {
	p := s.entries.Load()
	if p == nil {
		return false
	}
	m := *p
	hit := func(k revKey) bool {
		until, ok := m[k]
		return ok && now < until
	}
	return t.ID != "" && hit(revKey{RevokeToken, "", t.ID}) ||
		t.Issuer != "" && t.Subject != "" && hit(revKey{RevokeSubject, t.Issuer, t.Subject}) ||
		t.Widget != "" && hit(revKey{RevokeWidget, "", t.Widget})
}
