package main

import (
	"net/http"
	"net/http/pprof"
	"runtime"

	"github.com/guestgate/guestgate/config"
)

// mountPprof serves Go's profiles under /debug/pprof/ on the admin mux
// when admin.pprof is on, and starts the runtime recording mutex
// contention and blocking for them (config.Admin.Pprof). Off, it does
// neither.
func (s *sidecar) mountPprof(mux *http.ServeMux) {
	if !s.cfg.Load().Admin.Pprof {
		return
	}
	runtime.SetMutexProfileFraction(config.PprofMutexFraction)
	runtime.SetBlockProfileRate(int(config.PprofBlockRate.Nanoseconds()))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, mutex, block, allocs, ...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
