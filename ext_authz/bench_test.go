package ext_authz

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/guestgate/guestgate/bench/workload"
	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/engine"
)

// devConfig is the development setup; its policy dir is the shipped
// policies/.
const devConfig = "../testdata/dev/guestgate.yaml"

// shippedChecker is a Checker with the shipped policy and the development
// setup's trusted issuers, logging decisions as a deployment does by
// default (allows sampled, denials all) to nowhere.
func shippedChecker(tb testing.TB, cacheSize int) (*Checker, *workload.Setup) {
	tb.Helper()
	ws, err := workload.Load(devConfig)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := ws.Verifier(context.Background(), cacheSize)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	discard := slog.New(slog.NewJSONHandler(io.Discard, nil))
	eng, err := engine.New(engine.Options{Dir: ws.Config.Policy.Dir, Logger: discard})
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
	c, ws := shippedChecker(t, 0)
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

// BenchmarkCheckShippedPolicy is one in-process Check per kind of traffic
// with the shipped policy and real development tokens: "hit" with the
// token already in the verified-token cache, "miss" with the cache off
// (every check parses and verifies the signature).
func BenchmarkCheckShippedPolicy(b *testing.B) {
	kinds := []string{"xbs_kite_command", "xbs_link_command", "guest_login", "access_post_message", "sat_launchpad", "deny_xbs_command"}
	for _, cache := range []struct {
		name string
		size int
	}{{"hit", 0}, {"miss", -1}} {
		c, ws := shippedChecker(b, cache.size)
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
