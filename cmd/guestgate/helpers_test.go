package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/state"
	"github.com/guestgate/guestgate/tokens"
	"github.com/guestgate/guestgate/wiring"
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
	return runSidecarOn(t, cfg, logs, openTestState(t, cfg))
}

// runSidecarOn is runSidecar on a store of the caller's (nil: none),
// which the sidecar closes.
func runSidecarOn(t testing.TB, cfg *config.Config, logs io.Writer, store state.Store) (*sidecar, context.CancelFunc, chan error) {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Listen.Admin = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := newSidecar(ctx, cfg, logger, sidecarOptions{Store: store})
	if err != nil {
		cancel()
		if store != nil {
			store.Close()
		}
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
		case <-time.After(15 * time.Second): // a bound: a serve that never stops fails, not hangs
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
	signer, err := wiring.Signer(s.cfg.Load())
	if err != nil || signer == nil {
		t.Fatalf("signer: %v (nil: %t)", err, signer == nil)
	}
	return signer
}

// metricsURL is the admin listener's /metrics.
func metricsURL(s *sidecar) string {
	return "http://" + s.adminLis.Addr().String() + "/metrics"
}

// openTestState opens cfg's state store for a test: an embedded store
// under the checkout (the development setup's var/state) is moved to a
// fresh temporary directory, so tests never write into the repository and
// never share a file; a copy's (testsupport.CopyDevelopment) is its own.
func openTestState(t testing.TB, cfg *config.Config) state.Store {
	t.Helper()
	if cfg.State.Backend == state.BackendEmbedded && cfg.State.Dir != "" {
		abs, err := filepath.Abs(cfg.State.Dir)
		if err != nil || strings.HasPrefix(abs, testsupport.RepoRoot(t)+string(os.PathSeparator)) {
			cfg.State.Dir = t.TempDir()
		}
	}
	st, err := wiring.OpenState(cfg, wiring.StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}
