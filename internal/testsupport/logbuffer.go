package testsupport

import (
	"strings"
	"sync"
)

// LogBuffer collects log lines written from many goroutines (a server's
// handlers, a watcher) for a test to read: a strings.Builder behind a
// mutex, so the race detector has nothing to report.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
