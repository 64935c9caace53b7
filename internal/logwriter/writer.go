// Package logwriter puts a bounded queue between the process's log handler
// and its output (stderr), so that no request waits on the output's write
// system call.
//
// slog's handlers hold their own mutex across the Write of each line; on
// stderr that is a write(2) per line, and under load every check that logs
// (every denial) queued behind it. A Writer's Write copies the line into a
// queue and returns; one goroutine writes what has accumulated, in one
// write, as soon as it is woken. When the output cannot keep up and the
// queue is full, lines are dropped, counted, and reported once per burst by
// a line of the Writer's own: memory stays bounded and a check never
// blocks on its log line. That is the precedent of OPA's decision logger,
// which drops under back-pressure and counts. The denials' counts are not
// lost with their lines: the checks' metrics count every decision by reason.
package logwriter

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
)

// DefaultLimit is the queue's bound in bytes when Options.Limit is zero:
// two thousand decision lines or so.
const DefaultLimit = 1 << 20

// Options configure a Writer.
type Options struct {
	// Limit bounds the bytes queued and not yet written; a line that would
	// pass it is dropped. Zero: DefaultLimit. The Writer holds at most
	// twice it: the queue, and the batch being written.
	Limit int
}

// Stats are what became of the lines written to a Writer.
type Stats struct {
	// Dropped counts the lines that never reached the output: the queue
	// was full, or the output's write failed.
	Dropped uint64
	// WriteErrors counts the output's failed writes.
	WriteErrors uint64
}

// Writer is an io.Writer whose Write queues and returns. Each Write must
// be whole lines (slog's handlers write one line per call): lines are
// written in the order their Writes returned, each whole. It is safe for
// concurrent use.
type Writer struct {
	out   io.Writer
	limit int
	wake  chan struct{} // capacity 1: the writer goroutine has work
	done  chan struct{} // closed when the writer goroutine returns

	mu      sync.Mutex
	queue   []byte // whole lines, in order, not yet taken
	burst   uint64 // lines dropped since the last report
	stats   Stats
	closing bool // Close was called: the goroutine returns once the queue is empty
	stopped bool // the goroutine returned: Write writes through, under mu
}

// New starts a Writer onto out. Close it to write what is queued.
func New(out io.Writer, opts Options) *Writer {
	if opts.Limit <= 0 {
		opts.Limit = DefaultLimit
	}
	w := &Writer{out: out, limit: opts.Limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues p, or drops it when the queue has no room for it; it never
// waits on the output and never fails. After Close has drained the queue,
// it writes p through.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.stopped {
		defer w.mu.Unlock()
		return w.out.Write(p)
	}
	// cost: a copy under a lock held for nothing else; the system call
	// is the goroutine's.
	signal := len(w.queue) == 0
	if len(w.queue)+len(p) > w.limit {
		signal = w.burst == 0 // the first drop of a burst: report it soon
		w.burst++
		w.stats.Dropped++
	} else {
		w.queue = appendBounded(w.queue, p, w.limit)
	}
	w.mu.Unlock()
	if signal {
		select {
		case w.wake <- struct{}{}:
		default: // already woken
		}
	}
	return len(p), nil
}

// appendBounded appends p to q, growing q's capacity no further than limit
// (len(q)+len(p) <= limit).
func appendBounded(q, p []byte, limit int) []byte {
	if n := len(q) + len(p); n > cap(q) {
		c := max(2*cap(q), n, 4<<10)
		grown := make([]byte, len(q), min(c, limit))
		copy(grown, q)
		q = grown
	}
	return append(q, p...)
}

// Stats says what became of the lines so far.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Close writes what is queued and stops the goroutine, waiting at most
// until ctx is done (then it returns ctx's error and the goroutine goes on
// writing, if the output ever takes it). Writes after it write through.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes what accumulated each time it is woken, until Close and an
// empty queue.
func (w *Writer) run() {
	defer close(w.done)
	var spare []byte // the last batch's buffer, reused as the next queue
	for range w.wake {
		for {
			w.mu.Lock()
			if len(w.queue) == 0 && w.burst == 0 {
				stop := w.closing
				w.stopped = stop
				w.mu.Unlock()
				if stop {
					return
				}
				break
			}
			batch, burst := w.queue, w.burst
			w.queue, w.burst = spare[:0], 0
			w.mu.Unlock()
			w.write(batch)
			if burst > 0 {
				w.report(burst)
			}
			spare = batch
		}
	}
}

// write writes batch to the output; a failure drops its lines, counted.
func (w *Writer) write(batch []byte) {
	if len(batch) == 0 {
		return
	}
	if _, err := w.out.Write(batch); err != nil {
		lines := uint64(bytes.Count(batch, []byte{'\n'}))
		w.mu.Lock()
		w.stats.WriteErrors++
		w.stats.Dropped += lines
		w.mu.Unlock()
	}
}

// report writes the line that says a burst of n lines was dropped, in the
// process's log format, straight to the output (only this goroutine writes
// there, so it is in order and whole).
func (w *Writer) report(n uint64) {
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Warn("log lines dropped: the log output did not keep up, the queue was full",
		"log", "logwriter", "dropped", n, "queue_bytes", w.limit)
	w.write(b.Bytes())
}
