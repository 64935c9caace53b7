package main

// The session workload: many visitors, each a chat session of its own
// (first sightings for the decision cache), on a guestgate and a floor
// started for it alone, so the peak RSS is this workload's.

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/guestgate/guestgate/bench/load"
	"github.com/guestgate/guestgate/bench/workload"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

type sessionResult struct {
	visitors        int
	memLimitMiB     int // guestgate's runtime.memory_limit_mib (0: none)
	gg, floor       load.Result
	ggRSS, floorRSS int64
	ggCPU, floorCPU time.Duration
}

// sessions mints each visitor's Kite and public-link tokens (on every
// core) and returns every visitor's session.
func sessions(dev *testsupport.Development, visitors int) ([][]workload.Case, error) {
	out := make([][]workload.Case, visitors)
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for g := range errs {
		wg.Go(func() {
			for n := g; n < visitors; n += len(errs) {
				kite, err := dev.Signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryKite, WidgetID: "W-DEMO", ChannelID: testsupport.KiteChannel(n)})
				if err != nil {
					errs[g] = err
					return
				}
				link, err := dev.Signer.MintXBSAnonymous(tokens.XBSClaims{Entry: tokens.EntryPublicLink, ChannelID: "public-lobby"})
				if err != nil {
					errs[g] = err
					return
				}
				out[n] = workload.Session(kite.Token, link.Token, n)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sessionLoad sends every visitor's session once, o.streams at a time
// (stream w takes visitors w, w+streams, ...), to a fresh guestgate, then
// the same to a fresh floor.
func sessionLoad(ctx context.Context, o options, ggBin, cfgPath, floorBin string, dev *testsupport.Development) (*sessionResult, error) {
	progress("minting the tokens of %d session visitors", o.sessionVisitors)
	ss, err := sessions(dev, o.sessionVisitors)
	if err != nil {
		return nil, err
	}
	perStream := (o.sessionVisitors + o.streams - 1) / o.streams * workload.SessionLength
	next := func(verify bool) func(w, i int) load.Request {
		return func(w, i int) load.Request {
			c := ss[(w+o.streams*(i/workload.SessionLength))%len(ss)][i%workload.SessionLength]
			r := load.Request{Check: c.Request}
			if verify {
				r.Verify = c.Check
			}
			return r
		}
	}
	r := &sessionResult{visitors: o.sessionVisitors, memLimitMiB: o.memLimitMiB}
	for _, name := range []string{"guestgate", "floor"} {
		bin, args, env := floorBin, []string(nil), procsEnv(o.procs)
		if name == "guestgate" {
			bin, args, env = ggBin, []string{"serve", "--config", cfgPath}, append(procsEnv(o.procs), strings.Fields(o.env)...)
		}
		p, err := load.Start(ctx, name, bin, args, env, 30*time.Second)
		if err != nil {
			return nil, err
		}
		progress("session workload: %s, %d visitors × %d requests, %d streams", name, o.sessionVisitors, workload.SessionLength, o.streams)
		cpu0, err := p.CPU()
		if err != nil {
			p.Stop()
			return nil, err
		}
		res := load.Run(ctx, p.Conn, load.Options{Streams: o.streams, Duration: 10 * time.Minute, PerStream: perStream, Next: next(name == "guestgate")})
		cpu1, err := p.CPU()
		if err != nil {
			p.Stop()
			return nil, err
		}
		rss, err := p.PeakRSS()
		p.Stop()
		if err != nil {
			return nil, err
		}
		if name == "guestgate" {
			r.gg, r.ggRSS, r.ggCPU = res, rss, cpu1-cpu0
		} else {
			r.floor, r.floorRSS, r.floorCPU = res, rss, cpu1-cpu0
		}
	}
	return r, nil
}

// sessionRows reports the session workload.
func sessionRows(t *load.Table, r *sessionResult) {
	if r == nil {
		return
	}
	g := fmt.Sprintf("session workload (%d visitors × %d)", r.visitors, workload.SessionLength)
	ratio := r.gg.RPS() / r.floor.RPS()
	t.Add(load.Row{Group: g, Name: "guestgate / floor requests/s", Value: fmt.Sprintf("%.0f / %.0f", r.gg.RPS(), r.floor.RPS())})
	t.Add(load.Row{Group: g, Name: "throughput ratio guestgate/floor", Value: fmt.Sprintf("%.2f", ratio),
		Target: "≥ 0.60", Verdict: load.Verdict(ratio >= 0.6)})
	latencyRows(t, g, r.gg, r.floor)
	errorsRow(t, g, r.gg)
	t.Add(load.Row{Group: g, Name: "guestgate / floor CPU per check", Value: fmt.Sprintf("%s / %s",
		load.Micros(r.ggCPU/time.Duration(max(r.gg.Requests, 1))), load.Micros(r.floorCPU/time.Duration(max(r.floor.Requests, 1))))})
	rssName := "guestgate peak RSS (VmHWM), no memory limit"
	if r.memLimitMiB > 0 {
		rssName = fmt.Sprintf("guestgate peak RSS (VmHWM), soft limit %d MiB", r.memLimitMiB)
	}
	t.Add(load.Row{Group: g, Name: rssName, Value: fmt.Sprintf("%s (%.1f × the floor's %s)",
		mib(r.ggRSS), float64(r.ggRSS)/float64(max(r.floorRSS, 1)), mib(r.floorRSS)),
		Target: "≤ 128 MiB", Verdict: load.Verdict(r.ggRSS <= 128<<20)})
}
