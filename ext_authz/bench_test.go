package ext_authz

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/guestgate/guestgate/bench/workload"
	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// devConfig is the development setup; its policy dir is the shipped
// policies/.
const devConfig = "../testdata/dev/guestgate.yaml"

// shippedChecker is a Checker with the shipped policy and the development
// setup's trusted issuers, logging decisions as a deployment does by
// default (allows sampled, denials all) to nowhere.
//
// cacheSize is the verified-token cache's (negative: off) and
// decisionCache the engine's decision cache's (negative: off).
func shippedChecker(tb testing.TB, cacheSize, decisionCache int) (*Checker, *testsupport.Development) {
	tb.Helper()
	ws, err := testsupport.LoadDevelopment(devConfig)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := ws.Verifier(context.Background(), cacheSize)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	eng, err := engine.New(engine.Options{Dir: ws.Config.Policy.Dir, Logger: discard, DecisionCacheSize: decisionCache})
	if err != nil {
		tb.Fatal(err)
	}
	defaults, err := config.Parse(nil, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	c := New(Settings{Verifier: v, Check: ws.Config.Check, DecisionLog: defaults.DecisionLog}, Options{Logger: discard})
	c.SetEngine(eng)
	return c, ws
}

func TestShippedPolicyGivesTheBenchmarkMixItsAnswers(t *testing.T) {
	c, ws := shippedChecker(t, 0, 0)
	toks, err := ws.Mint(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range workload.Cases(toks, 1) {
		t.Run(tc.Name, func(t *testing.T) {
			// Twice: the second answer comes through the token cache.
			for range 2 {
				if err := tc.Check(c.Decide(context.Background(), tc.Request).CheckResponse()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestDecisionCacheChangesNoDecision runs the benchmark mix of several
// visitors, twice over, through a Checker with the decision cache and one
// without, and compares every decision.
func TestDecisionCacheChangesNoDecision(t *testing.T) {
	with, ws := shippedChecker(t, 0, 0)
	without, _ := shippedChecker(t, 0, -1)
	ctx := context.Background()
	var cases []workload.Case
	for n := range 3 {
		toks, err := ws.Mint(n)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, workload.Cases(toks, n)...)
		// The same requests with another visitor's token: what the token
		// says must reach the key.
		other, err := ws.Mint(n + 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range workload.Cases(other, n) {
			c.Name += "/other_visitor"
			cases = append(cases, c)
		}
	}
	allowed := 0
	for round := range 3 { // kept on the second, answered from the cache on the third
		for _, tc := range cases {
			got, want := with.Decide(ctx, tc.Request), without.Decide(ctx, tc.Request)
			// The answer on the wire, then every field of the decision.
			if g, w := got.CheckResponse(), want.CheckResponse(); !proto.Equal(g, w) {
				t.Fatalf("round %d %s: CheckResponse\n with the cache    %v\n without the cache %v", round, tc.Name, g, w)
			}
			got.Latency, want.Latency = 0, 0
			got.upstreamOpts, got.denyOpts = nil, nil // the shared wire form, compared above
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d %s:\n with the cache    %+v\n without the cache %+v", round, tc.Name, got, want)
			}
			if want.Allowed {
				allowed++
			}
		}
	}
	if allowed == 0 || allowed == 3*len(cases) {
		t.Fatalf("%d of %d decisions allowed: the mix must hold both", allowed, 3*len(cases))
	}
}

// BenchmarkCheckShippedPolicy is one in-process Check per kind of traffic
// with the shipped policy and real development tokens: "hit" with the
// token already in the verified-token cache, "miss" with that cache off
// (every check parses and verifies the signature), "hit-eval" and
// "miss-eval" the same with the decision cache off, so the policy is
// evaluated on every check.
func BenchmarkCheckShippedPolicy(b *testing.B) {
	kinds := []string{"xbs_kite_command", "xbs_link_command", "guest_login", "access_post_message", "sat_launchpad", "deny_xbs_command"}
	for _, cache := range []struct {
		name                string
		size, decisionCache int
	}{{"hit", 0, 0}, {"miss", -1, 0}, {"hit-eval", 0, -1}, {"miss-eval", -1, -1}} {
		c, ws := shippedChecker(b, cache.size, cache.decisionCache)
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
			b.Run(kind+"/"+cache.name, func(b *testing.B) {
				ctx := context.Background()
				if err := tc.Check(c.Decide(ctx, tc.Request).CheckResponse()); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if resp, _ := c.Check(ctx, tc.Request); resp == nil {
						b.Fatal("no response")
					}
				}
			})
		}
	}
}

// BenchmarkCheckLoopbackMix sends the load test's kinds of traffic to an
// in-process gRPC server on loopback from parallel callers: a profile of
// the whole served path (run with -cpuprofile), client included.
func BenchmarkCheckLoopbackMix(b *testing.B) {
	c, ws := shippedChecker(b, 0, 0)
	var cases []workload.Case
	for n := range 8 {
		toks, err := ws.Mint(n)
		if err != nil {
			b.Fatal(err)
		}
		cases = append(cases, workload.Cases(toks, n)...)
	}
	client := authv3.NewAuthorizationClient(loopback(b, c.Register))
	ctx := context.Background()
	var next atomic.Uint64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tc := cases[next.Add(1)%uint64(len(cases))]
			resp, err := client.Check(ctx, tc.Request)
			if err != nil {
				b.Error(err)
				return
			}
			if err := tc.Check(resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
