// Package memo keeps a value derived from something immutable and shared
// beside it, so that it is derived once rather than on every use: the
// policy input of a verified token the token cache hands out again, the
// parsed answer of a cached decision.
package memo

import "sync/atomic"

// Slot holds one derived value. The zero Slot is empty; a nil *Slot is
// always empty and ignores Store, for a holder that keeps nothing. It is
// safe for concurrent use and must not be copied.
type Slot struct{ v atomic.Pointer[any] }

// Load returns the value last stored in s when there is one and it is a
// T. Anything else is a miss: the caller derives the value itself, so a
// slot never hands out a value of another type than the caller asks for.
func Load[T any](s *Slot) (v T, ok bool) {
	if s == nil {
		return v, false
	}
	p := s.v.Load()
	if p == nil {
		return v, false
	}
	v, ok = (*p).(T)
	return v, ok
}

// Store keeps v in s for every later Load. The last store wins, so v must
// be a pure function of what holds s: every user of the holder sees it.
func Store[T any](s *Slot, v T) {
	if s == nil {
		return
	}
	var a any = v
	s.v.Store(&a)
}
