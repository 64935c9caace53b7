package main

// Policy reloads under load.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/guestgate/guestgate/bench/load"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

func (o options) reloads() int { return o.toggles }

type reloadResult struct {
	load.Result
	toggles      int
	latencies    []time.Duration // file landed -> new answer, per rewrite
	proberChecks int
	proberErrors int
	proberWrong  int
	timeouts     int
	firstProblem string
	compiles     []time.Duration // the engine's read-and-compile time per reload
}

// reloadUnderLoad runs the mix on all streams but one; that one, the
// prober, rewrites the registry so the marker widget's sessions flip, then
// sends the marker request until the answer flips (the time from the file
// landing to the new policy deciding), then keeps checking that the answer
// stays flipped for the hold time, and flips again.
func reloadUnderLoad(ctx context.Context, o options, gg *load.Process, dev *testsupport.Development, widgetsPath string,
	next func(w, i int) load.Request) (*reloadResult, error) {
	marker, err := dev.Signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: markerWidget, ChannelID: "kite-bench-marker"})
	if err != nil {
		return nil, err
	}
	probe := testsupport.CheckRequest("POST", "/conversations/channels/kite-bench-marker/MarkReadCommand", marker.Token, "")
	rr := &reloadResult{}
	problem := func(format string, args ...any) {
		if rr.firstProblem == "" {
			rr.firstProblem = fmt.Sprintf(format, args...)
		}
	}
	ask := func(ctx context.Context, client authv3.AuthorizationClient) (allowed, ok bool) {
		resp, err := client.Check(ctx, probe)
		if ctx.Err() != nil {
			return false, false
		}
		rr.proberChecks++
		if err != nil {
			rr.proberErrors++
			problem("prober: %v", err)
			return false, false
		}
		return resp.GetOkResponse() != nil, true
	}
	prober := func(ctx context.Context, client authv3.AuthorizationClient) {
		state := true
		for range o.toggles {
			want := !state
			if err := setMarker(widgetsPath, want); err != nil {
				problem("rewrite: %v", err)
				return
			}
			landed := time.Now()
			for {
				got, ok := ask(ctx, client)
				if ctx.Err() != nil {
					return
				}
				if ok && got == want {
					rr.latencies = append(rr.latencies, time.Since(landed))
					break
				}
				if time.Since(landed) > 5*time.Second {
					rr.timeouts++
					problem("the policy did not change within 5s of a rewrite")
					return
				}
			}
			rr.toggles++
			flipped := time.Now()
			for time.Since(flipped) < o.hold {
				got, ok := ask(ctx, client)
				if ctx.Err() != nil {
					return
				}
				if ok && got != want {
					rr.proberWrong++
					problem("the marker answer went back to the old policy after the new one decided")
				}
			}
			state = want
		}
	}
	limit := time.Duration(o.toggles)*(o.hold+5*time.Second) + time.Second
	rr.Result = load.Run(ctx, gg.Conn, load.Options{Streams: o.streams, Duration: limit, Next: next, Worker: prober})
	if rr.FirstWrong != "" {
		problem("%s", rr.FirstWrong)
	}
	return rr, nil
}

func reloadRows(t *load.Table, rr *reloadResult) {
	const g = "reload under load"
	failed := rr.Errors + rr.Wrong + rr.proberErrors + rr.proberWrong + rr.timeouts
	value := fmt.Sprintf("%d of %d checks (+%d prober checks)", failed, rr.Requests, rr.proberChecks)
	if rr.firstProblem != "" {
		value += " (" + rr.firstProblem + ")"
	}
	t.Add(load.Row{Group: g, Name: "policy rewrites applied", Value: fmt.Sprint(rr.toggles)})
	t.Add(load.Row{Group: g, Name: "failed or wrong checks", Value: value, Target: "0", Verdict: load.Verdict(failed == 0)})
	lat := append([]time.Duration(nil), rr.latencies...)
	slices.Sort(lat)
	if len(lat) > 0 {
		var parts []string
		for _, l := range rr.latencies {
			parts = append(parts, fmt.Sprintf("%.0f", float64(l)/float64(time.Millisecond)))
		}
		worst := lat[len(lat)-1]
		t.Add(load.Row{Group: g, Name: "file landed -> new policy deciding (max)", Value: load.Micros(worst),
			Target: "≤ 100 ms", Verdict: load.Verdict(worst <= 100*time.Millisecond)})
		t.Add(load.Row{Group: g, Name: "  each rewrite (ms)", Value: strings.Join(parts, " ")})
	}
	if len(rr.compiles) > 0 {
		var parts []string
		for _, c := range rr.compiles {
			parts = append(parts, fmt.Sprintf("%.0f", float64(c)/float64(time.Millisecond)))
		}
		t.Add(load.Row{Group: g, Name: "  of which read + compile (ms)", Value: strings.Join(parts, " ") + " (after a 50 ms debounce)"})
	}
	t.Add(load.Row{Group: g, Name: "requests/s during reloads", Value: fmt.Sprintf("%.0f", rr.RPS())})
	t.Add(load.Row{Group: g, Name: "latency p99 during reloads", Value: load.Micros(rr.Percentile(.99))})
}
