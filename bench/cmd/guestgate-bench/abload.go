package main

// A B A B load runs: guestgate and the floor in turn, under one GOMAXPROCS or another.

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/guestgate/guestgate/bench/load"
)

// procsEnv is the environment that sets a server's GOMAXPROCS (none for
// Go's default, every core).
func procsEnv(procs int) []string {
	if procs <= 0 {
		return nil
	}
	return []string{fmt.Sprintf("GOMAXPROCS=%d", procs)}
}

func procsName(procs int) string {
	if procs <= 0 {
		return fmt.Sprintf("Go's default (%d)", runtime.NumCPU())
	}
	return fmt.Sprint(procs)
}

// abResult is one configuration's load runs, guestgate and the floor in
// turn (A B A B).
type abResult struct {
	procs           int
	gg, floor       []load.Result
	ggCPU, floorCPU time.Duration
	ggGC            load.GCStats // collections during guestgate's runs
	ggRSS, floorRSS int64
	genCPU          time.Duration // this process's CPU (the in-repo generator) over all the runs
}

// selfCPU is this process's CPU time so far (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// abLoad drives gg and floor in turn, pairs times each.
func abLoad(ctx context.Context, o options, gg, floor *load.Process, pairs int, label string,
	next func(verify bool) func(w, i int) load.Request) (*abResult, error) {
	r := &abResult{}
	for i := range pairs {
		for _, p := range []*load.Process{gg, floor} {
			progress("load run %d/%d%s: %s, %d streams, %s", i+1, pairs, label, p.Name, o.streams, o.duration)
			cpu0, err := p.CPU()
			if err != nil {
				return nil, err
			}
			var gc0 load.GCStats
			if p == gg {
				if gc0, err = gg.GC(ctx); err != nil {
					return nil, err
				}
			}
			self0 := selfCPU()
			res := load.Run(ctx, p.Conn, load.Options{Streams: o.streams, Duration: o.duration, Next: next(p == gg)})
			r.genCPU += selfCPU() - self0
			cpu1, err := p.CPU()
			if err != nil {
				return nil, err
			}
			if p == gg {
				gc1, err := gg.GC(ctx)
				if err != nil {
					return nil, err
				}
				r.ggGC.Cycles += gc1.Cycles - gc0.Cycles
				r.ggGC.Pause += gc1.Pause - gc0.Pause
				r.gg, r.ggCPU = append(r.gg, res), r.ggCPU+cpu1-cpu0
			} else {
				r.floor, r.floorCPU = append(r.floor, res), r.floorCPU+cpu1-cpu0
			}
		}
	}
	return r, nil
}

// altLoad starts guestgate and the floor again with the other GOMAXPROCS
// (-alt-procs) and drives them as the main runs were.
func altLoad(ctx context.Context, o options, ggBin, cfgPath, floorBin string,
	next func(verify bool) func(w, i int) load.Request) (*abResult, error) {
	label := ", GOMAXPROCS " + procsName(o.altProcs)
	progress("starting guestgate and the floor with GOMAXPROCS %s", procsName(o.altProcs))
	gg, err := load.Start(ctx, "guestgate", ggBin, []string{"serve", "--config", cfgPath}, append(procsEnv(o.altProcs), strings.Fields(o.env)...), 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer gg.Stop()
	floor, err := load.Start(ctx, "floor", floorBin, nil, procsEnv(o.altProcs), 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer floor.Stop()
	for _, p := range []*load.Process{gg, floor} {
		load.Run(ctx, p.Conn, load.Options{Streams: o.streams, Duration: time.Second, Next: next(p == gg)})
	}
	r, err := abLoad(ctx, o, gg, floor, o.altPairs, label, next)
	if err != nil {
		return nil, err
	}
	r.procs = o.altProcs
	if r.ggRSS, err = gg.PeakRSS(); err != nil {
		return nil, err
	}
	if r.floorRSS, err = floor.PeakRSS(); err != nil {
		return nil, err
	}
	return r, nil
}
