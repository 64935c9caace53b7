package decisionlog

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// fakeClock is a Clock the test moves: its timers fire only in Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	delays []time.Duration // what each NewTimer was asked for
}

type fakeTimer struct {
	c              chan time.Time
	at             time.Time
	fired, stopped bool
	clock          *fakeClock
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), at: c.now.Add(d), clock: c}
	c.timers = append(c.timers, t)
	c.delays = append(c.delays, d)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := !t.fired && !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock on by d and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if !t.fired && !t.stopped && !t.at.After(c.now) {
			t.fired = true
			t.c <- c.now
		}
	}
}

// pending is the timers set and neither fired nor stopped, and every delay
// asked for so far.
func (c *fakeClock) pending() (int, []time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.fired && !t.stopped {
			n++
		}
	}
	return n, append([]time.Duration(nil), c.delays...)
}

// recorder is an Observer that keeps the counts.
type recorder struct {
	mu       sync.Mutex
	sent     int
	dropped  map[string]int
	failures int
}

func (r *recorder) Sent(n int) { r.mu.Lock(); r.sent += n; r.mu.Unlock() }
func (r *recorder) Dropped(reason string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dropped == nil {
		r.dropped = map[string]int{}
	}
	r.dropped[reason] += n
}
func (r *recorder) UploadFailed() { r.mu.Lock(); r.failures++; r.mu.Unlock() }

func (r *recorder) state() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("sent %d dropped %v failures %d", r.sent, r.dropped, r.failures)
}

// upload is one request the endpoint received.
type upload struct {
	header http.Header
	events []map[string]any
}

// endpoint is a decision log endpoint on loopback that answers each
// upload with the next of its statuses (200 once they run out), after
// waiting on gate when it is set.
type endpoint struct {
	mu       sync.Mutex
	uploads  []upload
	inFlight int
	statuses []int
	gate     chan struct{}
	srv      *httptest.Server
}

func newEndpoint(t *testing.T, statuses ...int) *endpoint {
	e := &endpoint{statuses: statuses}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("upload is not gzip: %v", err)
				http.Error(w, "bad gzip", http.StatusBadRequest)
				return
			}
			body = zr
		}
		var events []map[string]any
		if err := json.NewDecoder(body).Decode(&events); err != nil {
			t.Errorf("upload is not a JSON array of events: %v", err)
		}
		e.mu.Lock()
		e.inFlight++
		gate := e.gate
		e.mu.Unlock()
		if gate != nil {
			<-gate
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.inFlight--
		e.uploads = append(e.uploads, upload{header: r.Header.Clone(), events: events})
		status := http.StatusOK
		if len(e.statuses) > 0 {
			status, e.statuses = e.statuses[0], e.statuses[1:]
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) received() ([]upload, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]upload(nil), e.uploads...), e.inFlight
}

// sizes are the number of events of each upload received.
func (e *endpoint) sizes() []int {
	ups, _ := e.received()
	var out []int
	for _, u := range ups {
		out = append(out, len(u.events))
	}
	return out
}

// startSender runs a Sender on clock until the test ends; stop stops it
// and waits for Run to return.
func startSender(t *testing.T, o Options) (s *Sender, stop func()) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			// Run returns in its own goroutine once its last attempt ends.
			testsupport.Eventually(t, "Run to return", func() bool {
				select {
				case <-done:
					return true
				default:
					return false
				}
			})
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func event(n int) Event {
	return Event{Path: "guestgate/authz/decision", Result: map[string]any{"allowed": n%2 == 0, "n": n}}
}

func TestSenderBatchesBySizeAndByInterval(t *testing.T) {
	ep := newEndpoint(t)
	clock := newFakeClock()
	rec := &recorder{}
	s, _ := startSender(t, Options{URL: ep.srv.URL + "/logs", BatchSize: 3, BatchInterval: 5 * time.Second, Gzip: true,
		Labels: map[string]string{"id": "instance-1", "app": "guestgate"}, Clock: clock, Observer: rec})
	for n := range 7 {
		if !s.Log(event(n)) {
			t.Fatalf("event %d not kept", n)
		}
	}
	// Two full batches go at once; the seventh waits for its interval.
	testsupport.EventuallyState(t, "two full batches", func() (bool, string) {
		return fmt.Sprint(ep.sizes()) == "[3 3]", fmt.Sprint(ep.sizes())
	})
	testsupport.EventuallyState(t, "the third batch's timer", func() (bool, string) {
		n, delays := clock.pending()
		return n == 1, fmt.Sprint(n, delays)
	})
	if got := ep.sizes(); fmt.Sprint(got) != "[3 3]" {
		t.Fatalf("sent %v before the interval passed", got)
	}
	clock.Advance(5 * time.Second)
	testsupport.EventuallyState(t, "the third batch", func() (bool, string) {
		return fmt.Sprint(ep.sizes()) == "[3 3 1]", fmt.Sprint(ep.sizes())
	})
	if _, delays := clock.pending(); fmt.Sprint(delays) != "[5s 5s 5s]" {
		t.Fatalf("timers %v, want one batch interval per batch", delays)
	}
	ups, _ := ep.received()
	ids := map[string]bool{}
	for i, u := range ups {
		if u.header.Get("Content-Encoding") != "gzip" || u.header.Get("Content-Type") != "application/json" || u.header.Get("Authorization") != "" {
			t.Fatalf("upload %d headers %v", i, u.header)
		}
		for _, ev := range u.events {
			id, _ := ev["decision_id"].(string)
			labels, _ := ev["labels"].(map[string]any)
			if id == "" || ids[id] || labels["id"] != "instance-1" || ev["timestamp"] != "2030-01-02T03:04:05Z" || ev["path"] != "guestgate/authz/decision" {
				t.Fatalf("event %v", ev)
			}
			ids[id] = true
		}
	}
	// The endpoint has the batch before the Sender has its answer.
	testsupport.EventuallyState(t, "every event counted as sent", func() (bool, string) { return rec.state() == "sent 7 dropped map[] failures 0", rec.state() })
}

func TestSenderRetriesWithBackoffUntilTheEndpointTakesTheBatch(t *testing.T) {
	ep := newEndpoint(t, http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK)
	clock := newFakeClock()
	rec := &recorder{}
	s, _ := startSender(t, Options{URL: ep.srv.URL, BatchSize: 1, Clock: clock, Observer: rec, Jitter: func() float64 { return 0 }})
	s.Log(event(1))
	for i, delay := range []time.Duration{time.Second, 2 * time.Second} {
		testsupport.EventuallyState(t, fmt.Sprintf("failure %d and its backoff", i+1), func() (bool, string) {
			n, delays := clock.pending()
			return n == 1 && len(delays) == i+2, fmt.Sprint(delays, " ", rec.state())
		})
		if _, delays := clock.pending(); delays[i+1] != delay {
			t.Fatalf("backoff %d is %v, want %v", i+1, delays[i+1], delay)
		}
		clock.Advance(delay)
	}
	testsupport.EventuallyState(t, "the batch sent", func() (bool, string) { return rec.state() == "sent 1 dropped map[] failures 2", rec.state() })
	ups, _ := ep.received()
	if len(ups) != 3 || ups[0].events[0]["decision_id"] != ups[2].events[0]["decision_id"] {
		t.Fatalf("want the same event three times, got %d uploads", len(ups))
	}
}

func TestSenderBackoffDoublesUpToItsCapWithJitterOfUpToHalf(t *testing.T) {
	cases := []struct {
		retry  int
		jitter float64
		want   time.Duration
	}{
		{0, 0, time.Second}, {1, 0, 2 * time.Second}, {3, 0, 8 * time.Second},
		{5, 0, 30 * time.Second}, {62, 0, 30 * time.Second}, {3, 0.5, 6 * time.Second}, {0, 0.999, 500500 * time.Microsecond},
	}
	for _, c := range cases {
		s, err := New(Options{URL: "http://127.0.0.1:1", MaxRetryDelay: 30 * time.Second, Jitter: func() float64 { return c.jitter }})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.backoff(c.retry); got != c.want {
			t.Errorf("retry %d jitter %v: %v, want %v", c.retry, c.jitter, got, c.want)
		}
	}
}

func TestSenderDropsAndCountsWhatItsBufferCannotHold(t *testing.T) {
	ep := newEndpoint(t)
	gate := make(chan struct{})
	ep.gate = gate
	rec := &recorder{}
	s, _ := startSender(t, Options{URL: ep.srv.URL, BatchSize: 2, Buffer: 4, Clock: newFakeClock(), Observer: rec})
	s.Log(event(0))
	s.Log(event(1))
	// The first batch is on its way and held there: nothing is read from
	// the buffer until it is answered.
	testsupport.Eventually(t, "the first upload in flight", func() bool { _, n := ep.received(); return n == 1 })
	kept := 0
	for n := range 10 {
		if s.Log(event(n + 2)) {
			kept++
		}
	}
	if kept != 4 || rec.state() != "sent 0 dropped map[buffer_full:6] failures 0" {
		t.Fatalf("kept %d: %s", kept, rec.state())
	}
	close(gate)
	testsupport.EventuallyState(t, "the kept events sent", func() (bool, string) {
		return fmt.Sprint(ep.sizes()) == "[2 2 2]" && rec.state() == "sent 6 dropped map[buffer_full:6] failures 0", fmt.Sprint(ep.sizes(), rec.state())
	})
}

func TestSenderDropsABatchTheEndpointRefusesAndCarriesOn(t *testing.T) {
	ep := newEndpoint(t, http.StatusBadRequest)
	rec := &recorder{}
	s, _ := startSender(t, Options{URL: ep.srv.URL, BatchSize: 1, Clock: newFakeClock(), Observer: rec})
	s.Log(event(1))
	testsupport.EventuallyState(t, "the refusal counted", func() (bool, string) { return rec.state() == "sent 0 dropped map[rejected:1] failures 0", rec.state() })
	s.Log(event(2))
	testsupport.EventuallyState(t, "the next batch sent", func() (bool, string) { return rec.state() == "sent 1 dropped map[rejected:1] failures 0", rec.state() })
	if got := ep.sizes(); fmt.Sprint(got) != "[1 1]" {
		t.Fatalf("uploads %v: a refused batch is not sent again", got)
	}
}

func TestSenderSendsWhatIsLeftWhenItStops(t *testing.T) {
	ep := newEndpoint(t)
	rec := &recorder{}
	s, stop := startSender(t, Options{URL: ep.srv.URL, BatchSize: 2, Clock: newFakeClock(), Observer: rec})
	for n := range 3 {
		s.Log(event(n))
	}
	testsupport.Eventually(t, "the full batch", func() bool { return len(ep.sizes()) == 1 && rec.state() == "sent 2 dropped map[] failures 0" })
	stop()
	if got := fmt.Sprint(ep.sizes()); got != "[2 1]" || rec.state() != "sent 3 dropped map[] failures 0" {
		t.Fatalf("uploads %v: %s", got, rec.state())
	}
}

// TestSenderLogsFailuresWithoutTheEndpointsQueryOrItsToken: an endpoint
// URL may carry a key in its query; neither it nor the bearer token ever
// reaches the log, and a batch that never got through is dropped at stop.
func TestSenderLogsFailuresWithoutTheEndpointsQueryOrItsToken(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL + "/logs?key=url-secret"
	down.Close() // nothing listens there now: every upload fails
	logs := &testsupport.LogBuffer{}
	clock := newFakeClock()
	rec := &recorder{}
	s, stop := startSender(t, Options{URL: url, BatchSize: 1, Clock: clock, Observer: rec, BearerToken: "token-secret",
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	s.Log(event(1))
	testsupport.EventuallyState(t, "a failed upload", func() (bool, string) { n, _ := clock.pending(); return n == 1, rec.state() })
	stop()
	if got := rec.state(); got != "sent 0 dropped map[shutdown:1] failures 1" {
		t.Fatal(got)
	}
	if out := logs.String(); !strings.Contains(out, "decision log upload failed") || !strings.Contains(out, "/logs") ||
		strings.Contains(out, "url-secret") || strings.Contains(out, "token-secret") {
		t.Fatalf("log:\n%s", out)
	}
}

func TestSenderSendsPlainJSONAndItsBearerTokenWhenAsked(t *testing.T) {
	ep := newEndpoint(t)
	s, _ := startSender(t, Options{URL: ep.srv.URL, BatchSize: 1, Clock: newFakeClock(), BearerToken: "endpoint-token"})
	s.Log(event(1))
	testsupport.Eventually(t, "the upload", func() bool { return len(ep.sizes()) == 1 })
	ups, _ := ep.received()
	if h := ups[0].header; h.Get("Content-Encoding") != "" || h.Get("Authorization") != "Bearer endpoint-token" {
		t.Fatalf("headers %v", h)
	}
}

func TestNewRefusesAURLItCannotSendTo(t *testing.T) {
	for _, u := range []string{"", "logs.example/logs", "ftp://logs.example/", "http://"} {
		if _, err := New(Options{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
