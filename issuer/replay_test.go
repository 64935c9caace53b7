package issuer

import (
	"errors"
	"testing"
	"time"
)

func TestReplayMemoryForgetsOnlyExpiredSignatures(t *testing.T) {
	m := newReplayMemory()
	t0 := time.Unix(1_700_000_000, 0)
	sig := func(b byte) [32]byte { return [32]byte{b} }
	steps := []struct {
		name   string
		client string
		sig    byte
		ttl    time.Duration // forgetAt - now
		now    time.Duration // since t0
		want   error
	}{
		{"first use", "a", 1, 10 * time.Minute, 0, nil},
		{"replay", "a", 1, 10 * time.Minute, time.Minute, errReplayed},
		{"another client's memory is its own", "b", 1, 10 * time.Minute, time.Minute, nil},
		{"second signature fills a's memory", "a", 2, time.Minute, time.Minute, nil},
		{"full: refused, nothing forgotten", "a", 3, 10 * time.Minute, time.Minute, errMemoryFull},
		{"after one expired, room again", "a", 3, 10 * time.Minute, 3 * time.Minute, nil},
		{"the unexpired one is still spent", "a", 1, 10 * time.Minute, 4 * time.Minute, errReplayed},
	}
	for _, s := range steps {
		now := t0.Add(s.now)
		err := m.record(s.client, sig(s.sig), now.Add(s.ttl), now, 2)
		if !errors.Is(err, s.want) && err != s.want {
			t.Fatalf("%s: got %v, want %v", s.name, err, s.want)
		}
	}
}
