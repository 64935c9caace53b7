package ext_authz

import (
	"context"
	"runtime"
	"testing"

	"github.com/guestgate/guestgate/bench/workload"
)

// BenchmarkCachedTokenBytes reports what a cached token costs the heap
// after the session workload: each of 2000 visitors' sessions (a Kite and a
// public-link token, 20 checks) is sent once through a Checker with the
// default token cache (10000 entries, so every token stays cached) and the
// decision cache on, and the live heap after a collection, less the one
// before, is divided by the tokens cached. Decisions are first sightings
// (none is kept), so the figure is the tokens' (with the decision cache's
// bounded memory of first sightings).
func BenchmarkCachedTokenBytes(b *testing.B) {
	const visitors = 2000
	for b.Loop() {
		b.StopTimer()
		c, ws := shippedChecker(b, 0, 10000)
		sessions := make([][]workload.Case, visitors)
		for n := range sessions {
			toks, err := ws.Mint(n)
			if err != nil {
				b.Fatal(err)
			}
			sessions[n] = workload.Session(toks.Kite, toks.Link, n)
		}
		// One check first: the policy's own lazily built parts are not
		// the tokens'.
		toks, err := ws.Mint(visitors)
		if err != nil {
			b.Fatal(err)
		}
		for _, tc := range workload.Session(toks.Kite, toks.Link, visitors) {
			c.Decide(context.Background(), tc.Request)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for _, s := range sessions {
			for _, tc := range s {
				if err := tc.Check(c.Decide(context.Background(), tc.Request).CheckResponse()); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(2*visitors), "B/token")
		runtime.KeepAlive(sessions)
		runtime.KeepAlive(c)
		b.StartTimer()
	}
}
