package decisionlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"
)

// Why events are dropped: the Observer's reasons.
const (
	// DropBufferFull: the buffer held Options.Buffer events already
	// (the endpoint is slow or failing).
	DropBufferFull = "buffer_full"
	// DropRejected: the endpoint refused the batch for good (a 4xx other
	// than 408 and 429): sending it again cannot help.
	DropRejected = "rejected"
	// DropShutdown: still unsent when the Sender stopped and its last
	// attempt failed.
	DropShutdown = "shutdown"
	// DropEncoding: the batch could not be encoded as JSON.
	DropEncoding = "encoding"
)

// Observer is told what becomes of the events (metrics hang here). Its
// methods are called from the Sender's goroutine, and Dropped with
// DropBufferFull from Log's caller.
type Observer interface {
	Sent(events int)
	Dropped(reason string, events int)
	UploadFailed()
}

// Options configure a Sender. URL is required; the rest have defaults.
type Options struct {
	// URL receives each batch: POST, a JSON array of events.
	URL string
	// BatchSize is the most events one upload carries. Zero: 100.
	BatchSize int
	// BatchInterval is the longest the first event of a batch waits for
	// the batch to fill. Zero: 5s.
	BatchInterval time.Duration
	// Buffer bounds the events waiting to be sent; Log drops beyond it.
	// Zero: 10000.
	Buffer int
	// Gzip compresses uploads (Content-Encoding: gzip).
	Gzip bool
	// Timeout bounds one upload, and the last attempt when the Sender
	// stops. Zero: 10s.
	Timeout time.Duration
	// MinRetryDelay is the first backoff after a failed upload, doubled
	// after each further failure up to MaxRetryDelay; each delay is
	// jittered down by up to half. Zero: 1s and 1m.
	MinRetryDelay, MaxRetryDelay time.Duration
	// BearerToken, when set, is sent as Authorization: Bearer.
	BearerToken string
	// Labels go in every event (OPA's id and version labels, say).
	Labels map[string]string
	// Client sends the uploads. Nil: a client bounded by Timeout.
	Client *http.Client
	// Clock reads the time and sets the timers. Nil: SystemClock.
	Clock Clock
	// Jitter returns a number in [0, 1) for each backoff. Nil: math/rand.
	Jitter func() float64
	// Logger receives upload failures. Nil: slog.Default().
	Logger *slog.Logger
	// Observer counts; nil counts nothing.
	Observer Observer
}

// Sender batches events and sends them. Log is safe for concurrent use;
// run one Run.
type Sender struct {
	o     Options
	queue chan Event
	log   *slog.Logger
	// where names the endpoint in logs: scheme, host and path, never its
	// query or user info.
	where string
}

// New checks opts and returns a Sender; it sends nothing until Run.
func New(o Options) (*Sender, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("decisionlog: Options.URL must be an http or https URL")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.Buffer <= 0 {
		o.Buffer = 10000
	}
	def(&o.BatchInterval, 5*time.Second)
	def(&o.Timeout, 10*time.Second)
	def(&o.MinRetryDelay, time.Second)
	def(&o.MaxRetryDelay, time.Minute)
	if o.MaxRetryDelay < o.MinRetryDelay {
		o.MaxRetryDelay = o.MinRetryDelay
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Sender{o: o, queue: make(chan Event, o.Buffer), where: u.Scheme + "://" + u.Host + u.Path}
	s.log = o.Logger.With("component", "decision_log_sender", "endpoint", s.where)
	return s, nil
}

// Log hands ev to the Sender without waiting: it is dropped and counted
// when the buffer is full. It reports whether ev was kept.
func (s *Sender) Log(ev Event) bool {
	if ev.Timestamp.IsZero() {
		ev.Timestamp = s.o.Clock.Now()
	}
	select {
	case s.queue <- ev:
		return true
	default:
		if s.o.Observer != nil {
			s.o.Observer.Dropped(DropBufferFull, 1)
		}
		return false
	}
}

// Run sends batches until ctx is done, then tries once, within Timeout,
// to send what is left, and returns.
func (s *Sender) Run(ctx context.Context) {
	batch := make([]Event, 0, s.o.BatchSize)
	var timer Timer
	var due <-chan time.Time
	for {
		select {
		case ev := <-s.queue:
			batch = append(batch, ev)
			if len(batch) == 1 {
				timer = s.o.Clock.NewTimer(s.o.BatchInterval)
				due = timer.C()
			}
			if len(batch) < s.o.BatchSize {
				continue
			}
		case <-due:
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			s.drain(batch)
			return
		}
		if timer != nil {
			timer.Stop()
			timer, due = nil, nil
		}
		s.deliver(ctx, batch)
		batch = make([]Event, 0, s.o.BatchSize)
	}
}

// drain sends batch and whatever is buffered, one attempt each, within
// one Timeout in all; what fails is dropped.
func (s *Sender) drain(batch []Event) {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	for {
	fill:
		for len(batch) < s.o.BatchSize {
			select {
			case ev := <-s.queue:
				batch = append(batch, ev)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		if err := s.attempt(ctx, batch); err != nil {
			s.dropped(DropShutdown, len(batch))
			s.log.Warn("decision log batch dropped at shutdown", "events", len(batch), "error", err)
		}
		batch = batch[:0]
	}
}

// deliver sends one batch, retrying with backoff while the endpoint fails,
// until it is sent, refused for good, or ctx is done (then it is dropped).
func (s *Sender) deliver(ctx context.Context, batch []Event) {
	body, err := s.encode(batch)
	if err != nil {
		s.dropped(DropEncoding, len(batch))
		s.log.Error("decision log batch cannot be encoded; dropped", "events", len(batch), "error", err)
		return
	}
	for retry := 0; ; retry++ {
		err := s.upload(ctx, body)
		if err == nil {
			if s.o.Observer != nil {
				s.o.Observer.Sent(len(batch))
			}
			return
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			s.dropped(DropRejected, len(batch))
			s.log.Error("decision log endpoint refused a batch; dropped", "events", len(batch), "status", refused.status)
			return
		}
		if s.o.Observer != nil {
			s.o.Observer.UploadFailed()
		}
		delay := s.backoff(retry)
		s.log.Warn("decision log upload failed; retrying", "events", len(batch), "retry_in", delay.String(), "error", err)
		t := s.o.Clock.NewTimer(delay)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			// One last try, as Run's drain gives the rest.
			if s.attempt(context.Background(), batch) != nil {
				s.dropped(DropShutdown, len(batch))
			}
			return
		}
	}
}

// attempt encodes and uploads batch once.
func (s *Sender) attempt(ctx context.Context, batch []Event) error {
	body, err := s.encode(batch)
	if err != nil {
		return err
	}
	if err := s.upload(ctx, body); err != nil {
		return err
	}
	if s.o.Observer != nil {
		s.o.Observer.Sent(len(batch))
	}
	return nil
}

// backoff is the delay before retry n (0 for the first): MinRetryDelay
// doubled n times, at most MaxRetryDelay, less up to half of it at random
// so that a fleet does not retry in step.
func (s *Sender) backoff(n int) time.Duration {
	d := s.o.MaxRetryDelay
	if n < 32 {
		if v := s.o.MinRetryDelay << n; v > 0 && v < d {
			d = v
		}
	}
	return d - time.Duration(float64(d/2)*s.o.Jitter())
}

// encode is the batch as the upload's body: a JSON array, gzipped when
// configured.
func (s *Sender) encode(batch []Event) ([]byte, error) {
	for i := range batch {
		if batch[i].DecisionID == "" {
			batch[i].DecisionID = uuid.NewString()
		}
		batch[i].Labels = s.o.Labels
	}
	doc, err := json.Marshal(batch)
	if err != nil || !s.o.Gzip {
		return doc, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(doc); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// refusedError is an answer that sending again cannot change.
type refusedError struct{ status int }

func (e *refusedError) Error() string { return fmt.Sprintf("refused with %d", e.status) }

// upload POSTs one encoded batch, within Timeout. A 2xx is success; 408,
// 429 and 5xx answers and transport errors are worth a retry; any other
// answer is a refusedError.
func (s *Sender) upload(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "guestgate-decision-log")
	if s.o.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if s.o.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.o.BearerToken)
	}
	resp, err := s.o.Client.Do(req)
	if err != nil {
		// The error names the URL, which may hold a query: say where, and
		// what went wrong, without it.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("POST %s: %w", s.where, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch st := resp.StatusCode; {
	case st >= 200 && st < 300:
		return nil
	case st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500:
		return fmt.Errorf("POST %s: %s", s.where, resp.Status)
	default:
		return &refusedError{status: st}
	}
}

func (s *Sender) dropped(reason string, n int) {
	if s.o.Observer != nil {
		s.o.Observer.Dropped(reason, n)
	}
}
