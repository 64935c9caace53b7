package config

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchReloadsForAChangeMadeBeforeItBegan: a file written after the
// serving config was read but before the watch was in place is a change
// (a secret rotated during start-up is not missed); files older than that
// are not.
func TestWatchReloadsForAChangeMadeBeforeItBegan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		changed bool
	}{{"written after the read", true}, {"unchanged since the read", false}} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(f, []byte("one"), 0o600); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(f, old, old); err != nil {
				t.Fatal(err)
			}
			readAt := time.Now().Add(-time.Minute)
			if tc.changed {
				if err := os.WriteFile(f, []byte("two"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			changes := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() {
				done <- Watch(ctx, func() []string { return []string{f} }, readAt, 10*time.Millisecond,
					slog.New(slog.NewTextHandler(io.Discard, nil)), func() { changes <- struct{}{} })
			}()
			select {
			case <-changes:
				if !tc.changed {
					t.Fatal("reloaded for a file unchanged since the config was read")
				}
			case <-time.After(500 * time.Millisecond):
				if tc.changed {
					t.Fatal("a change made before the watch began was missed")
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
