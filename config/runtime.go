package config

// Runtime configures the Go runtime of the serving process.
type Runtime struct {
	// MemoryLimitMiB is the collector's soft memory limit in MiB
	// (runtime/debug.SetMemoryLimit): near it the collector runs more
	// often, instead of letting the heap grow to GOGC's target (three
	// times the live heap at serve's GOGC=200). The caches hold a few KiB
	// per token and decision, so a sidecar with many visitors has a live
	// heap of tens of MiB and, without a limit, a peak of three times
	// that. Empty (0): 90% of the container's memory limit (cgroups) when
	// there is one, else none. -1: none, whatever the container's. The
	// GOMEMLIMIT environment variable, when set, wins over both.
	MemoryLimitMiB int `yaml:"memory_limit_mib"`
}

// MinMemoryLimitMiB is the least runtime.memory_limit_mib: below it the
// compiled policy and the caches' floor alone would keep the collector
// running all the time.
const MinMemoryLimitMiB = 32

func (c *Config) validateRuntime(add func(key, format string, args ...any)) {
	if m := c.Runtime.MemoryLimitMiB; m != 0 && m != -1 && (m < MinMemoryLimitMiB || m > 1<<20) {
		add("runtime.memory_limit_mib", "must be 0 (the container's), -1 (none) or between %d and %d", MinMemoryLimitMiB, 1<<20)
	}
}
