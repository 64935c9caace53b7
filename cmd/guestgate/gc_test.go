package main

import (
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// TestServeGivesTheCollectorTheContainersMemoryLimit: serve runs the
// collector at GOGC=200 with runtime.memory_limit_mib, or else 90% of the
// container's memory limit, as its soft limit, and leaves both to GOGC and
// GOMEMLIMIT when they are set.
func TestServeGivesTheCollectorTheContainersMemoryLimit(t *testing.T) {
	prevPercent, prevLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(prevPercent); debug.SetMemoryLimit(prevLimit) })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("AUTOMEMLIMIT", "")
	os.Unsetenv("AUTOMEMLIMIT")

	tuneGC(quiet, 0, memlimit.Limit(100<<20))
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GOGC = %d, want %d", got, gcPercent)
	}
	if got, want := debug.SetMemoryLimit(math.MaxInt64), int64(0.9*(100<<20)); got != want {
		t.Errorf("memory limit %d, want %d (90%% of the container's)", got, want)
	}

	// No container limit: none.
	tuneGC(quiet, 0, func() (uint64, error) { return 0, memlimit.ErrNoLimit })
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("no container limit: memory limit %d", got)
	}

	// runtime.memory_limit_mib: its limit, with or without a container's.
	for _, container := range []memlimit.Provider{memlimit.Limit(100 << 20), func() (uint64, error) { return 0, memlimit.ErrNoLimit }} {
		tuneGC(quiet, 64, container)
		if got := debug.SetMemoryLimit(math.MaxInt64); got != 64<<20 {
			t.Errorf("runtime.memory_limit_mib 64: memory limit %d", got)
		}
	}
	// -1: none, even in a container with a limit.
	tuneGC(quiet, -1, memlimit.Limit(100<<20))
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("runtime.memory_limit_mib -1: memory limit %d", got)
	}

	// Set by the operator: left alone, whatever the config says.
	debug.SetGCPercent(100)
	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	tuneGC(quiet, 64, memlimit.Limit(100<<20))
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: the collector's target was changed to %d", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT set: the memory limit was changed to %d", got)
	}
}
