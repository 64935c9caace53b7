// Command guestgate-bench is `make bench`: it runs the Go benchmarks, then a
// loopback load test of the guestgate binary and of a no-op floor server
// (interleaved A B A B), then reloads the policy several times under load,
// and prints every figure in one table.
//
// Run it from the repository root: go run ./bench/cmd/guestgate-bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/guestgate/guestgate/bench/load"
	"github.com/guestgate/guestgate/bench/workload"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// clientGCPercent is the load generator's garbage-collector target (see
// run).
const clientGCPercent = 1000

type options struct {
	repo            string
	duration        time.Duration
	pairs           int
	streams         int
	visitors        int
	toggles         int
	hold            time.Duration
	benchtime       string
	benchRegex      string
	skipGo          bool
	env             string
	bin             string
	varyingPairs    int
	procs           int
	altProcs        int
	altPairs        int
	ghzPairs        int
	sessionVisitors int
	memLimitMiB     int
	only            string
	profileDir      string
}

// loadOnly says whether -only load runs the load rows alone: the in-repo
// generator's and ghz's runs of guestgate and the floor, nothing else.
func (o options) loadOnly() bool { return o.only == "load" }

func main() {
	var o options
	flag.StringVar(&o.repo, "repo", ".", "repository root")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each load run")
	flag.IntVar(&o.pairs, "pairs", 5, "guestgate/floor run pairs (A B A B ...)")
	flag.IntVar(&o.varyingPairs, "varying-pairs", 2, "guestgate/floor run pairs of the mix with varying bodies")
	flag.IntVar(&o.streams, "streams", 16, "concurrent Checks on the one connection")
	flag.IntVar(&o.visitors, "visitors", 64, "visitors, each with its own tokens")
	flag.IntVar(&o.toggles, "reloads", 6, "policy rewrites in the reload test")
	flag.DurationVar(&o.hold, "reload-hold", 700*time.Millisecond, "how long each rewritten policy is checked before the next")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime")
	flag.StringVar(&o.benchRegex, "bench", "^Benchmark(Check|CheckShippedPolicy|Eval|EvalShippedPolicy|Verify)$", "go test -bench")
	flag.BoolVar(&o.skipGo, "skip-go", false, "skip the Go benchmarks")
	flag.StringVar(&o.bin, "guestgate-bin", "", "test this guestgate binary instead of building ./cmd/guestgate")
	flag.IntVar(&o.procs, "procs", 0, "GOMAXPROCS of both servers in the main runs (0: Go's default, every core)")
	flag.IntVar(&o.altProcs, "alt-procs", 1, "GOMAXPROCS of both servers in the second set of runs (0: Go's default; -1: no second set)")
	flag.IntVar(&o.altPairs, "alt-pairs", 3, "guestgate/floor run pairs with -alt-procs")
	flag.IntVar(&o.ghzPairs, "ghz-pairs", 2, "guestgate/floor run pairs driven by ghz, the outside load generator (0: none)")
	flag.IntVar(&o.sessionVisitors, "session-visitors", 10000, "visitors of the session workload, each a session of its own (0: none)")
	flag.IntVar(&o.memLimitMiB, "memory-limit-mib", defaultMemLimitMiB, "runtime.memory_limit_mib of guestgate's config: the soft limit a container's memory limit would give it (0: none, as a process outside a container)")
	flag.StringVar(&o.env, "sidecar-env", "", "space-separated NAME=VALUE added to guestgate's environment (GOGC=200 ...)")
	flag.StringVar(&o.only, "only", "", `"load": the loopback load rows alone (the in-repo generator's and ghz's A B runs), no Go benchmarks, varying bodies, reloads, GOMAXPROCS runs or session workload`)
	flag.StringVar(&o.profileDir, "profile", "", "directory: after the counted runs, one more guestgate run per generator (not counted) with its execution trace and CPU, mutex and block profiles saved there (admin.pprof on)")
	flag.Parse()
	if o.only != "" && !o.loadOnly() {
		fmt.Fprintf(os.Stderr, "guestgate-bench: -only %q: the only choice is \"load\"\n", o.only)
		os.Exit(2)
	}
	if o.loadOnly() {
		o.skipGo, o.varyingPairs, o.altPairs, o.sessionVisitors = true, 0, 0, 0
	}
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "guestgate-bench:", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# "+format+"\n", args...)
}

func run(ctx context.Context, o options, out io.Writer) error {
	started := time.Now()
	repo, err := filepath.Abs(o.repo)
	if err != nil {
		return err
	}
	t := &load.Table{}
	if !o.skipGo {
		if err := goBenchmarks(ctx, o, repo, t); err != nil {
			return err
		}
	}

	tmp, err := os.MkdirTemp("", "guestgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	progress("building guestgate and the floor")
	bins := map[string]string{"guestgate": "./cmd/guestgate", "guestgate-floor": "./bench/cmd/guestgate-floor"}
	if o.ghzPairs > 0 {
		bins["ghz"] = ghzPkg
	}
	for name, pkg := range bins {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(tmp, name), pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = repo, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", pkg, err)
		}
	}
	if o.profileDir != "" {
		if o.profileDir, err = filepath.Abs(o.profileDir); err == nil {
			err = os.MkdirAll(o.profileDir, 0o755)
		}
		if err != nil {
			return err
		}
	}
	cfgPath, widgetsPath, err := writeSetup(repo, tmp, o.profileDir != "", o.memLimitMiB)
	if err != nil {
		return err
	}

	dev, err := testsupport.LoadDevelopment(filepath.Join(repo, "testdata/dev/guestgate.yaml"))
	if err != nil {
		return err
	}
	progress("minting tokens for %d visitors", o.visitors)
	visitors := make([][]workload.Case, o.visitors)
	for n := range visitors {
		toks, err := dev.Mint(n)
		if err != nil {
			return err
		}
		visitors[n] = workload.Cases(toks, n)
	}
	sched, err := schedule(visitors[0])
	if err != nil {
		return err
	}
	next := func(verify bool) func(w, i int) load.Request {
		return func(w, i int) load.Request {
			c := visitors[(w*31+i)%len(visitors)][sched[(i*7+w)%len(sched)]]
			r := load.Request{Check: c.Request}
			if verify {
				r.Verify = c.Check
			}
			return r
		}
	}

	// The same mix with a body that differs on every request for the chat
	// command and the message post (four checks in ten). The policy reads
	// the message post's body, so the decision cache cannot answer those;
	// an anonymous token's chat command is decided without its body, so
	// those share their decisions all the same.
	var unique atomic.Uint64 // bodies never repeat, across runs too
	varying := func(verify bool) func(w, i int) load.Request {
		return func(w, i int) load.Request {
			c := visitors[(w*31+i)%len(visitors)][sched[(i*7+w)%len(sched)]]
			switch c.Name {
			case "xbs_kite_command":
				c = c.WithBody(fmt.Sprintf(`{"messageId":"m-%d"}`, unique.Add(1)))
			case "access_post_message":
				c = c.WithBody(fmt.Sprintf(`{"toPersonId":"regular-person-2","text":"hello %d"}`, unique.Add(1)))
			}
			r := load.Request{Check: c.Request}
			if verify {
				r.Verify = c.Check
			}
			return r
		}
	}

	// This process is the load generator from here on. It allocates per
	// Check about as much as the server does (a gRPC client call, the
	// answer); at Go's default it would collect dozens of times a second,
	// and every stop of its world would be added to the latency it measures
	// of whichever server is under test. The proxy it stands in for (Envoy)
	// has no collector, so it collects rarely: some tens of MiB more of its
	// own memory. The setting is this process's alone: the servers'
	// environment is unchanged.
	debug.SetGCPercent(clientGCPercent)
	progress("starting guestgate and the floor")
	ggBin := filepath.Join(tmp, "guestgate")
	if o.bin != "" {
		ggBin = o.bin
	}
	gg, err := load.Start(ctx, "guestgate", ggBin, []string{"serve", "--config", cfgPath}, append(procsEnv(o.procs), strings.Fields(o.env)...), 30*time.Second)
	if err != nil {
		return err
	}
	defer gg.Stop()
	floor, err := load.Start(ctx, "floor", filepath.Join(tmp, "guestgate-floor"), nil, procsEnv(o.procs), 30*time.Second)
	if err != nil {
		return err
	}
	defer floor.Stop()

	// Warm up both (connections, the token cache, the Go runtime); not
	// counted.
	progress("warming up")
	for _, p := range []*load.Process{gg, floor} {
		load.Run(ctx, p.Conn, load.Options{Streams: o.streams, Duration: time.Second, Next: next(p == gg)})
	}

	decisions0 := gg.Decisions()
	primary, err := abLoad(ctx, o, gg, floor, o.pairs, "", next)
	if err != nil {
		return err
	}
	decisions := gg.Decisions() - decisions0
	if o.profileDir != "" {
		err := profileRun(ctx, o, gg, o.profileDir, "in-repo", func() error {
			load.Run(ctx, gg.Conn, load.Options{Streams: o.streams, Duration: o.duration, Next: next(true)})
			return nil
		})
		if err != nil {
			return err
		}
	}
	ggRSS, err := gg.PeakRSS()
	if err != nil {
		return err
	}
	floorRSS, err := floor.PeakRSS()
	if err != nil {
		return err
	}

	var gz *ghzResult
	if o.ghzPairs > 0 {
		protoset, data, err := ghzSetup(tmp, next(false), o.streams)
		if err != nil {
			return err
		}
		if gz, err = ghzLoad(ctx, o, filepath.Join(tmp, "ghz"), protoset, data, gg, floor); err != nil {
			return err
		}
		if o.profileDir != "" {
			err := profileRun(ctx, o, gg, o.profileDir, "ghz", func() error {
				_, err := ghzRun(ctx, o, filepath.Join(tmp, "ghz"), protoset, data, gg)
				return err
			})
			if err != nil {
				return err
			}
		}
	}

	var vgg, vfloor []load.Result
	for i := range o.varyingPairs {
		for _, p := range []*load.Process{gg, floor} {
			progress("load run %d/%d with varying bodies: %s", i+1, o.varyingPairs, p.Name)
			res := load.Run(ctx, p.Conn, load.Options{Streams: o.streams, Duration: o.duration, Next: varying(p == gg)})
			if p == gg {
				vgg = append(vgg, res)
			} else {
				vfloor = append(vfloor, res)
			}
		}
	}

	var rl *reloadResult
	if !o.loadOnly() {
		progress("reload under load: %d policy rewrites", o.reloads())
		loads0 := len(gg.PolicyLoads())
		if rl, err = reloadUnderLoad(ctx, o, gg, dev, widgetsPath, next(true)); err != nil {
			return err
		}
		rl.compiles = gg.PolicyLoads()[loads0:]
	}

	ggRSSEnd, err := gg.PeakRSS()
	if err != nil {
		return err
	}
	gg.Stop()
	floor.Stop()

	var alt *abResult
	if o.altProcs >= 0 && o.altPairs > 0 {
		if alt, err = altLoad(ctx, o, ggBin, cfgPath, filepath.Join(tmp, "guestgate-floor"), next); err != nil {
			return err
		}
	}

	var sess *sessionResult
	if o.sessionVisitors > 0 {
		if sess, err = sessionLoad(ctx, o, ggBin, cfgPath, filepath.Join(tmp, "guestgate-floor"), dev); err != nil {
			return err
		}
	}

	loopbackRows(t, o, gg, floor, primary, ggRSS, floorRSS, decisions)
	ghzRows(t, gz)
	varyingRows(t, vgg, vfloor)
	if alt != nil {
		altRows(t, alt)
	}
	sessionRows(t, sess)
	if rl != nil {
		reloadRows(t, rl)
	}
	t.Add(load.Row{Group: "whole run", Name: "guestgate peak RSS (VmHWM) at the end", Value: mib(ggRSSEnd),
		Target: "≤ 64 MiB", Verdict: load.Verdict(ggRSSEnd <= 64<<20)})
	t.Title = fmt.Sprintf("guestgate bench: %s, %s, %d CPUs, %d load runs of %s per server, %d streams on one connection; took %s",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.Version(), runtime.NumCPU(), o.pairs, o.duration, o.streams,
		time.Since(started).Round(time.Second))
	return t.Write(out)
}
