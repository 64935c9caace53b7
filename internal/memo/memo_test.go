package memo

import (
	"sync"
	"testing"
)

type derived struct{ n int }

func TestSlotLoadsOnlyWhatWasStoredAsTheTypeAskedFor(t *testing.T) {
	one, two := &derived{1}, &derived{2}
	for _, tc := range []struct {
		name   string
		slot   func() *Slot
		want   *derived
		wantOK bool
	}{
		{"an empty slot misses", func() *Slot { return &Slot{} }, nil, false},
		{"a nil slot misses", func() *Slot { return nil }, nil, false},
		{"a nil slot keeps no store", func() *Slot { var s *Slot; Store(s, one); return s }, nil, false},
		{"a stored value loads as its type", func() *Slot { s := &Slot{}; Store(s, one); return s }, one, true},
		{"the last store wins", func() *Slot { s := &Slot{}; Store(s, one); Store(s, two); return s }, two, true},
		{"a value of another type misses", func() *Slot { s := &Slot{}; Store(s, "one"); return s }, nil, false},
		{"a value of another type stored last misses", func() *Slot { s := &Slot{}; Store(s, one); Store(s, derived{1}); return s }, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Load[*derived](tc.slot())
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("Load = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestSlotIsSafeForConcurrentUse: run under -race, loads and stores from
// many goroutines at once see either nothing or a value stored.
func TestSlotIsSafeForConcurrentUse(t *testing.T) {
	s := &Slot{}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				if v, ok := Load[*derived](s); ok && (v == nil || v.n < 0 || v.n >= 8) {
					t.Errorf("loaded %v, never stored", v)
				}
				Store(s, &derived{i})
			}
		})
	}
	wg.Wait()
	if _, ok := Load[*derived](s); !ok {
		t.Fatal("nothing kept after the stores")
	}
}
