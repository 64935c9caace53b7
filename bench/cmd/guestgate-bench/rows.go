package main

// The loopback load test's rows.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/guestgate/guestgate/bench/load"
)

func loopbackRows(t *load.Table, o options, gg, floor *load.Process, r *abResult, ggRSS, floorRSS int64, decisions int64) {
	g := "loopback load"
	if o.procs > 0 {
		g += ", GOMAXPROCS " + procsName(o.procs)
	}
	ggRuns, floorRuns, ggCPU, floorCPU, ggGC := r.gg, r.floor, r.ggCPU, r.floorCPU, r.ggGC
	ga, fa := all(ggRuns), all(floorRuns)
	perRun, ratio := pairs(ggRuns, floorRuns)
	t.Add(load.Row{Group: g, Name: "guestgate requests/s", Value: fmt.Sprintf("%.0f", ga.RPS())})
	t.Add(load.Row{Group: g, Name: "floor requests/s", Value: fmt.Sprintf("%.0f", fa.RPS())})
	t.Add(load.Row{Group: g, Name: "runs guestgate/floor (A B A B)", Value: strings.Join(perRun, " ")})
	t.Add(load.Row{Group: g, Name: "throughput ratio guestgate/floor (median pair)", Value: fmt.Sprintf("%.2f (all runs: %.2f)", ratio, ga.RPS()/fa.RPS()),
		Target: "≥ 0.85", Verdict: load.Verdict(ratio >= 0.85)})
	latencyRows(t, g, ga, fa)
	errorsRow(t, g, ga)
	row := load.Row{Group: g, Name: "floor errors", Value: fmt.Sprintf("%d of %d", fa.Errors, fa.Requests)}
	if fa.FirstError != "" {
		row.Value += " (" + fa.FirstError + ")"
	}
	t.Add(row)
	t.Add(load.Row{Group: g, Name: "guestgate CPU per check", Value: fmt.Sprintf("%s (%.2f cores)",
		load.Micros(ggCPU/time.Duration(max(ga.Requests, 1))), ggCPU.Seconds()/ga.Elapsed.Seconds())})
	t.Add(load.Row{Group: g, Name: "floor CPU per check", Value: fmt.Sprintf("%s (%.2f cores)",
		load.Micros(floorCPU/time.Duration(max(fa.Requests, 1))), floorCPU.Seconds()/fa.Elapsed.Seconds())})
	t.Add(load.Row{Group: g, Name: "the in-repo generator's own CPU per call", Value: load.Micros(r.genCPU / time.Duration(max(ga.Requests+fa.Requests, 1)))})
	// Where guestgate's tail latency comes from: each collection stops the
	// world twice and then marks with part of the CPU.
	t.Add(load.Row{Group: g, Name: "guestgate garbage collections", Value: gcValue(ggGC, ga.Elapsed)})
	t.Add(load.Row{Group: g, Name: "guestgate peak RSS (VmHWM)", Value: mib(ggRSS), Target: "≤ 64 MiB", Verdict: load.Verdict(ggRSS <= 64<<20)})
	t.Add(load.Row{Group: g, Name: "floor peak RSS (VmHWM)", Value: mib(floorRSS)})
	t.Add(load.Row{Group: g, Name: "guestgate ready after start", Value: load.Micros(gg.Ready), Target: "≤ 200 ms", Verdict: load.Verdict(gg.Ready <= 200*time.Millisecond)})
	t.Add(load.Row{Group: g, Name: "floor ready after start", Value: load.Micros(floor.Ready)})
	t.Add(load.Row{Group: g, Name: "decision log lines (allows 1%, denials all)", Value: fmt.Sprintf("%d (%.1f%% of checks)",
		decisions, 100*float64(decisions)/float64(max(ga.Requests, 1)))})
}

// all merges runs.
func all(rs []load.Result) load.Result {
	var m load.Result
	for _, r := range rs {
		m.Requests += r.Requests
		m.Errors += r.Errors
		m.Wrong += r.Wrong
		m.Elapsed += r.Elapsed
		m.Latencies = append(m.Latencies, r.Latencies...)
		if m.FirstWrong == "" {
			m.FirstWrong = r.FirstWrong
		}
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
	}
	slices.Sort(m.Latencies)
	return m
}

// pairs lists each pair's requests/s and returns the median of the pairs'
// ratios: a burst of other work on the machine spoils one pair, not the
// figure.
func pairs(gg, floor []load.Result) ([]string, float64) {
	var perRun []string
	var ratios []float64
	for i := range gg {
		perRun = append(perRun, fmt.Sprintf("%.0f/%.0f", gg[i].RPS(), floor[i].RPS()))
		ratios = append(ratios, gg[i].RPS()/floor[i].RPS())
	}
	if len(ratios) == 0 {
		return nil, 0
	}
	return perRun, median(ratios)
}

// median is the middle of xs (the mean of the two middle ones for an even
// count); it sorts xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	m := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		m = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return m
}

// altRows reports the second set of runs, with the other GOMAXPROCS.
func altRows(t *load.Table, r *abResult) {
	g := "loopback, GOMAXPROCS " + procsName(r.procs)
	ga, fa := all(r.gg), all(r.floor)
	perRun, ratio := pairs(r.gg, r.floor)
	t.Add(load.Row{Group: g, Name: "runs guestgate/floor (A B A B)", Value: strings.Join(perRun, " ")})
	t.Add(load.Row{Group: g, Name: "throughput ratio guestgate/floor (median pair)", Value: fmt.Sprintf("%.2f", ratio),
		Target: "≥ 0.80", Verdict: load.Verdict(ratio >= 0.8)})
	latencyRows(t, g, ga, fa)
	errorsRow(t, g, ga)
	t.Add(load.Row{Group: g, Name: "guestgate / floor CPU per check", Value: fmt.Sprintf("%s / %s",
		load.Micros(r.ggCPU/time.Duration(max(ga.Requests, 1))), load.Micros(r.floorCPU/time.Duration(max(fa.Requests, 1))))})
	t.Add(load.Row{Group: g, Name: "guestgate garbage collections", Value: gcValue(r.ggGC, ga.Elapsed)})
	t.Add(load.Row{Group: g, Name: "guestgate / floor peak RSS (VmHWM)", Value: mib(r.ggRSS) + " / " + mib(r.floorRSS),
		Target: "≤ 64 MiB", Verdict: load.Verdict(r.ggRSS <= 64<<20)})
}

// gcValue is collections per second over elapsed, and the stop-the-world
// pause each took on average.
func gcValue(gc load.GCStats, elapsed time.Duration) string {
	return fmt.Sprintf("%.0f/s, stop-the-world %s per collection",
		float64(gc.Cycles)/elapsed.Seconds(), load.Micros(gc.Pause/time.Duration(max(gc.Cycles, 1))))
}

// latencyRows reports guestgate's latency percentiles, judged, and the
// floor's beside them.
func latencyRows(t *load.Table, g string, ga, fa load.Result) {
	for _, x := range []struct {
		name string
		r    load.Result
	}{{"guestgate", ga}, {"floor", fa}} {
		row := load.Row{Group: g, Name: x.name + " latency p50/p95/p99",
			Value: fmt.Sprintf("%s / %s / %s", load.Micros(x.r.Percentile(.5)), load.Micros(x.r.Percentile(.95)), load.Micros(x.r.Percentile(.99)))}
		if x.name == "guestgate" {
			row.Target, row.Verdict = "p99 ≤ 2 ms", load.Verdict(x.r.Percentile(.99) <= 2*time.Millisecond)
		}
		t.Add(row)
	}
	gap := ga.Percentile(.99) - fa.Percentile(.99)
	t.Add(load.Row{Group: g, Name: "guestgate p99 above the floor's", Value: load.Micros(gap),
		Target: "≤ 0.5 ms", Verdict: load.Verdict(gap <= 500*time.Microsecond)})
}

// errorsRow reports guestgate's failed and wrong checks, which must be 0.
func errorsRow(t *load.Table, g string, ga load.Result) {
	row := load.Row{Group: g, Name: "guestgate errors / wrong answers", Value: fmt.Sprintf("%d / %d of %d", ga.Errors, ga.Wrong, ga.Requests),
		Target: "0", Verdict: load.Verdict(ga.Errors+ga.Wrong == 0)}
	if s := ga.FirstError + ga.FirstWrong; s != "" {
		row.Value += " (" + s + ")"
	}
	t.Add(row)
}

// varyingRows reports the mix whose chat commands and message posts carry
// a body of their own: the message posts (two checks in ten) evaluate the
// policy.
func varyingRows(t *load.Table, gg, floor []load.Result) {
	if len(gg) == 0 {
		return
	}
	const g = "loopback, varying bodies"
	ga := all(gg)
	perRun, ratio := pairs(gg, floor)
	t.Add(load.Row{Group: g, Name: "runs guestgate/floor (A B A B)", Value: strings.Join(perRun, " ")})
	t.Add(load.Row{Group: g, Name: "throughput ratio guestgate/floor (median pair)", Value: fmt.Sprintf("%.2f", ratio)})
	t.Add(load.Row{Group: g, Name: "guestgate latency p50/p95/p99",
		Value: fmt.Sprintf("%s / %s / %s", load.Micros(ga.Percentile(.5)), load.Micros(ga.Percentile(.95)), load.Micros(ga.Percentile(.99)))})
	errorsRow(t, g, ga)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
