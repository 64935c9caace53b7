package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/tokens"
)

// startSidecar runs cfg on loopback port 0 in-process, logging JSON to
// logs (nil: nowhere), and returns it once /readyz says ready.
func startSidecar(t *testing.T, cfg *config.Config, logs io.Writer) *sidecar {
	t.Helper()
	s, _, _ := runSidecar(t, cfg, logs)
	return s
}

// runSidecar is startSidecar that also returns the cancel that stops the
// sidecar and the channel serve's result arrives on.
func runSidecar(t testing.TB, cfg *config.Config, logs io.Writer) (*sidecar, context.CancelFunc, chan error) {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Admin = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := newSidecar(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := s.listen(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop within 15s of cancellation")
		}
	})
	waitReady(t, "http://"+s.adminLis.Addr().String()+"/readyz")
	return s, cancel, done
}

// devConfig is the development setup (run from the repository root).
func devConfig(t *testing.T) *config.Config {
	t.Helper()
	repoRoot(t)
	cfg, err := config.Development()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// signerOf builds a signer from the sidecar's config, as mint does: same
// keys, so what it mints the sidecar verifies.
func signerOf(t *testing.T, s *sidecar) *tokens.Signer {
	t.Helper()
	signer, err := buildSigner(s.cfg.Load())
	if err != nil || signer == nil {
		t.Fatalf("signer: %v (nil: %t)", err, signer == nil)
	}
	return signer
}

// syncBuffer collects log lines written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// scrape reads the admin listener's /metrics.
func scrape(t *testing.T, s *sidecar) string {
	t.Helper()
	resp, err := http.Get("http://" + s.adminLis.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// metric is the value of one sample in an exposition, labels written as
// Prometheus writes them (sorted by name), or 0 when it is absent.
func metric(t *testing.T, exposition, sample string) float64 {
	t.Helper()
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
