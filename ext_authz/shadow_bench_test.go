package ext_authz

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/guestgate/guestgate/bench/workload"
	"github.com/guestgate/guestgate/engine"
)

// BenchmarkCheckShadow is the live Check's cost with a shadow policy (the
// shipped policy again, sampled at 1.0) beside the same Check without one,
// per kind of traffic: "cached" with both policies' decision caches on
// (the default), "eval" with both off, so both policies evaluate on every
// check. shadow-off has no shadow; shadow-offer hands every check to the
// queue, whose worker takes it and decides nothing (what the check itself
// pays); shadow-on runs the shadow's worker, which on the same cores
// competes with the checks for CPU (its allocations count too). drops/op
// is the share of checks the shadow's queue could not take.
func BenchmarkCheckShadow(b *testing.B) {
	kinds := []string{"xbs_kite_command", "access_post_message", "deny_xbs_command"}
	for _, cache := range []struct {
		name          string
		decisionCache int
	}{{"cached", 0}, {"eval", -1}} {
		for _, mode := range []string{"off", "offer", "on"} {
			c, ws := shippedChecker(b, 0, cache.decisionCache)
			rec := newShadowRecorder()
			if mode != "off" {
				eng, err := engine.New(engine.Options{Dir: ws.Config.Policy.Dir, DecisionCacheSize: cache.decisionCache,
					Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				c.SetShadow(ShadowOptions{Engine: eng, Sample: 1, Observer: rec})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					if mode == "on" {
						c.RunShadow(ctx)
						return
					}
					sh := c.shadow.Load()
					for {
						select {
						case <-ctx.Done():
							return
						case job := <-sh.queue:
							sh.bytes.Add(-job.bytes)
						}
					}
				}()
				b.Cleanup(func() { cancel(); <-done })
			}
			toks, err := ws.Mint(1)
			if err != nil {
				b.Fatal(err)
			}
			cases := map[string]workload.Case{}
			for _, tc := range workload.Cases(toks, 1) {
				cases[tc.Name] = tc
			}
			for _, kind := range kinds {
				tc := cases[kind]
				b.Run(kind+"/"+cache.name+"/shadow-"+mode, func(b *testing.B) {
					ctx := context.Background()
					if err := tc.Check(c.Decide(ctx, tc.Request).CheckResponse()); err != nil {
						b.Fatal(err)
					}
					_, before := rec.counts()
					b.ReportAllocs()
					for b.Loop() {
						if resp, _ := c.Check(ctx, tc.Request); resp == nil {
							b.Fatal("no response")
						}
					}
					_, after := rec.counts()
					b.ReportMetric(float64(after-before)/float64(b.N), "drops/op")
				})
			}
		}
	}
}
