package logwriter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// gate is an output whose writes wait for the test: each Write first says
// so on entered, then waits until release is closed.
type gate struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
		<-g.release
	case <-g.release:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func (g *gate) lines() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Split(strings.TrimSuffix(g.buf.String(), "\n"), "\n")
}

// sink is an output that takes every write at once.
type sink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func mustWrite(t *testing.T, w *Writer, line string) {
	t.Helper()
	if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", line, n, err)
	}
}

func mustClose(t *testing.T, w *Writer) {
	t.Helper()
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestLinesFromManyWritersArriveWholeAndInOrder(t *testing.T) {
	out := &sink{}
	w := New(out, Options{})
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				mustWrite(t, w, fmt.Sprintf(`{"writer":%d,"seq":%d,"pad":"%s"}`+"\n", g, i, strings.Repeat("x", i%40)))
			}
		}()
	}
	wg.Wait()
	mustClose(t, w)

	next := make([]int, writers)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range lines {
		var v struct{ Writer, Seq int }
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("a line not whole: %q: %v", l, err)
		}
		if v.Seq != next[v.Writer] {
			t.Fatalf("writer %d: line %d after %d", v.Writer, v.Seq, next[v.Writer]-1)
		}
		next[v.Writer]++
	}
	if len(lines) != writers*each {
		t.Fatalf("%d lines, want %d", len(lines), writers*each)
	}
	if st := w.Stats(); st != (Stats{}) {
		t.Fatalf("stats %+v, want none dropped", st)
	}
}

func TestAFullQueueDropsCountsAndReportsOnceWithoutBlocking(t *testing.T) {
	out := newGate()
	w := New(out, Options{Limit: 100})
	mustWrite(t, w, "first\n")
	<-out.entered // the goroutine is in the output's Write, holding "first"
	for i := range 15 {
		mustWrite(t, w, fmt.Sprintf("line-%03d\n", i)) // 9 bytes: 11 fit in 100
	}
	if st := w.Stats(); st.Dropped != 4 || st.WriteErrors != 0 {
		t.Fatalf("stats %+v while the output is blocked, want 4 dropped", st)
	}
	close(out.release)
	mustClose(t, w)

	lines := out.lines()
	want := []string{"first"}
	for i := range 11 {
		want = append(want, fmt.Sprintf("line-%03d", i))
	}
	if len(lines) != len(want)+1 || strings.Join(lines[:len(want)], ",") != strings.Join(want, ",") {
		t.Fatalf("lines %q, want %q and the report", lines, want)
	}
	var report struct {
		Level, Msg string
		Dropped    int
	}
	if err := json.Unmarshal([]byte(lines[len(want)]), &report); err != nil || report.Level != "WARN" || report.Dropped != 4 || !strings.Contains(report.Msg, "dropped") {
		t.Fatalf("report line %q (%v), want a WARN with dropped 4", lines[len(want)], err)
	}
}

func TestCloseDrainsTheQueue(t *testing.T) {
	out := newGate()
	w := New(out, Options{})
	mustWrite(t, w, "a\n")
	<-out.entered
	mustWrite(t, w, "b\n")
	mustWrite(t, w, "c\n")
	closed := make(chan error, 1)
	go func() { closed <- w.Close(context.Background()) }()
	close(out.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(out.lines(), ","); got != "a,b,c" {
		t.Fatalf("after Close: %q, want a,b,c", got)
	}
	mustWrite(t, w, "late\n") // after Close: written through, at once
	if got := strings.Join(out.lines(), ","); got != "a,b,c,late" {
		t.Fatalf("a Write after Close: %q, want a,b,c,late", got)
	}
}

func TestCloseGivesUpWhenItsContextEnds(t *testing.T) {
	out := newGate()
	w := New(out, Options{})
	mustWrite(t, w, "stuck\n")
	<-out.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with the output blocked = %v, want context.Canceled", err)
	}
	mustWrite(t, w, "queued\n") // the goroutine still runs: queued, not written through
	close(out.release)
	mustClose(t, w)
	if got := strings.Join(out.lines(), ","); got != "stuck,queued" {
		t.Fatalf("%q, want stuck,queued", got)
	}
}

type failing struct{ calls int }

func (f *failing) Write([]byte) (int, error) { f.calls++; return 0, errors.New("broken pipe") }

func TestAFailingOutputDropsCountedAndNeverFailsAWrite(t *testing.T) {
	out := &failing{}
	w := New(out, Options{})
	for _, l := range []string{"a\n", "b\n", "c\n"} {
		mustWrite(t, w, l)
	}
	mustClose(t, w)
	st := w.Stats()
	if st.Dropped != 3 || st.WriteErrors == 0 || st.WriteErrors > 3 || st.WriteErrors != uint64(out.calls) {
		t.Fatalf("stats %+v after %d failed writes, want 3 dropped", st, out.calls)
	}
}

func TestALineLargerThanTheQueueIsDropped(t *testing.T) {
	out := &sink{}
	w := New(out, Options{Limit: 10})
	mustWrite(t, w, strings.Repeat("x", 20)+"\n")
	mustWrite(t, w, "fits\n")
	mustClose(t, w)
	if st := w.Stats(); st.Dropped != 1 {
		t.Fatalf("stats %+v, want 1 dropped", st)
	}
	// The report may come before or after "fits": the drop woke the
	// goroutine.
	if got := out.String(); !strings.Contains(got, "fits\n") || strings.Contains(got, "xxxx") || !strings.Contains(got, `"dropped":1`) {
		t.Fatalf("output %q, want fits and the report", got)
	}
}
