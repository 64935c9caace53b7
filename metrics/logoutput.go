package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// LogOutputStats are what the metrics show of the process's log output
// (logwriter.Stats, without the package).
type LogOutputStats struct {
	Dropped     uint64
	WriteErrors uint64
}

// logOutputMetrics read the log output's counts when scraped.
type logOutputMetrics struct {
	mu    sync.Mutex
	stats func() LogOutputStats // nil: none (the counts are 0)
}

func (l *logOutputMetrics) read() LogOutputStats {
	l.mu.Lock()
	f := l.stats
	l.mu.Unlock()
	if f == nil {
		return LogOutputStats{}
	}
	return f()
}

func (m *Metrics) registerLogOutput() {
	l := &m.logOutput
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "guestgate_log_lines_dropped_total",
			Help: "Log lines (decision lines included) never written to stderr: its queue was full because the output did not keep up, or the write failed. The checks themselves are not affected.",
		}, func() float64 { return float64(l.read().Dropped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "guestgate_log_write_errors_total",
			Help: "Writes of log lines to stderr that failed (their lines are counted as dropped).",
		}, func() float64 { return float64(l.read().WriteErrors) }),
	)
}

// LogOutput makes the log output metrics read the counts from f.
func (m *Metrics) LogOutput(f func() LogOutputStats) {
	m.logOutput.mu.Lock()
	m.logOutput.stats = f
	m.logOutput.mu.Unlock()
}
