// Package load is guestgate's loopback load test: it drives an ext_authz
// gRPC server with concurrent Checks on one connection for a fixed time,
// checks every answer, and reports throughput and latency percentiles. It
// also runs the servers under test as child processes (ready time, CPU
// time, peak RSS) and prints the one table `make bench` shows.
//
// It is benchmark support only: nothing in the product imports it.
package load

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
)

// Request is one Check to send and how to judge its answer.
type Request struct {
	Check *authv3.CheckRequest
	// Verify returns an error when resp is not the answer the request must
	// get. Nil: any answer counts (the floor allows everything).
	Verify func(resp *authv3.CheckResponse) error
}

// Options configure one load run.
type Options struct {
	Streams  int           // concurrent callers on the one connection
	Duration time.Duration // how long to send
	// Next returns worker w's i-th request.
	Next func(w, i int) Request
	// PerStream, when above 0, ends each worker after that many requests
	// (the run ends when every worker has, or Duration passed).
	PerStream int
	// Worker, when set, replaces the load of worker 0 (the reload test's
	// prober). It must return when ctx is done; the run ends when it
	// returns.
	Worker func(ctx context.Context, client authv3.AuthorizationClient)
}

// Result is what one run measured.
type Result struct {
	Requests   int             // answered
	Errors     int             // gRPC errors
	Wrong      int             // answers that were not the expected one
	FirstWrong string          // the first wrong answer, for the report
	FirstError string          // the first error, for the report
	Elapsed    time.Duration   // from the first send to the last answer
	Latencies  []time.Duration // sorted
}

// RPS is answered requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile is the latency under which fraction p (0..1) of the requests
// were answered (nearest rank).
func (r Result) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Percentile returns the nearest-rank p-quantile (0 < p <= 1) of sorted
// latencies; 0 when there are none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(p*float64(n) + 0.999999999) // ceil(p*n), robust to float error
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Run sends Checks from opts.Streams goroutines over conn until
// opts.Duration has passed or ctx is done.
func Run(ctx context.Context, conn grpc.ClientConnInterface, opts Options) Result {
	client := authv3.NewAuthorizationClient(conn)
	// A cancel at the end, not a deadline: gRPC's own deadline timer can
	// fire before the context reports it, which would count as an error.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := time.AfterFunc(opts.Duration, cancel)
	defer stop.Stop()
	type partial struct {
		lat         []time.Duration
		errs, wrong int
		firstWrong  string
		firstErr    string
	}
	parts := make([]partial, opts.Streams)
	var wg sync.WaitGroup
	var wrongSeen atomic.Bool
	start := time.Now()
	for w := range opts.Streams {
		if w == 0 && opts.Worker != nil {
			wg.Go(func() { opts.Worker(ctx, client); cancel() })
			continue
		}
		wg.Go(func() {
			p := &parts[w]
			p.lat = make([]time.Duration, 0, 1<<14)
			for i := 0; ctx.Err() == nil && (opts.PerStream <= 0 || i < opts.PerStream); i++ {
				req := opts.Next(w, i)
				t0 := time.Now()
				resp, err := client.Check(ctx, req.Check)
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						break // the run ended while this one was in flight
					}
					p.errs++
					if p.firstErr == "" {
						p.firstErr = err.Error()
					}
					continue
				}
				p.lat = append(p.lat, d)
				if req.Verify != nil {
					if err := req.Verify(resp); err != nil {
						p.wrong++
						if wrongSeen.CompareAndSwap(false, true) {
							p.firstWrong = err.Error()
						}
					}
				}
			}
		})
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start)}
	for _, p := range parts {
		res.Latencies = append(res.Latencies, p.lat...)
		res.Errors += p.errs
		res.Wrong += p.wrong
		if p.firstWrong != "" {
			res.FirstWrong = p.firstWrong
		}
		if p.firstErr != "" {
			res.FirstError = p.firstErr
		}
	}
	slices.Sort(res.Latencies)
	res.Requests = len(res.Latencies)
	return res
}
