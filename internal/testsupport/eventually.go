package testsupport

import (
	"testing"
	"time"
)

// patience is how long Eventually waits before it fails the test.
const patience = 10 * time.Second

// pollEvery is how often Eventually asks again.
const pollEvery = 20 * time.Millisecond

// Eventually polls cond until it holds, failing tb after patience (10 s).
// It is for what a test cannot be told about: a real watcher, listener or
// process reacting in its own goroutine (a reload after a file change, a
// server coming up). It waits for a state and never measures how long
// getting there took.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	EventuallyState(tb, what, func() (bool, string) { return cond(), "" })
}

// EventuallyState is Eventually for a condition that also describes the
// state it found: the last description is in the failure.
func EventuallyState(tb testing.TB, what string, cond func() (ok bool, state string)) {
	tb.Helper()
	deadline := time.NewTimer(patience)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		select {
		case <-deadline.C:
			if state != "" {
				tb.Fatalf("gave up after %s waiting for %s; last: %s", patience, what, state)
			}
			tb.Fatalf("gave up after %s waiting for %s", patience, what)
		case <-tick.C:
		}
	}
}
