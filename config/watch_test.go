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

// TestChangedSinceTellsAChangeMadeAfterTheConfigWasRead: a file written
// after the serving config was read but before the watch was in place is a
// change (a secret rotated during start-up is not missed); files older
// than that are not. The modification times are set, not taken from the
// wall clock.
func TestChangedSinceTellsAChangeMadeAfterTheConfigWasRead(t *testing.T) {
	readAt := time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		modified time.Time // zero: the file does not exist
		changed  bool
	}{
		{"written after the read", readAt.Add(time.Minute), true},
		{"written at the instant of the read", readAt, true},
		{"unchanged since before the read", readAt.Add(-time.Hour), false},
		{"missing", time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "secret")
			if !tc.modified.IsZero() {
				if err := os.WriteFile(f, []byte("one"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(f, tc.modified, tc.modified); err != nil {
					t.Fatal(err)
				}
			}
			if got := changedSince([]string{f}, readAt); got != tc.changed {
				t.Fatalf("changedSince = %v, want %v", got, tc.changed)
			}
		})
	}
}

// TestWatchReloadsForAChangeMadeBeforeItBegan: Watch acts on
// changedSince at its start, without waiting for a file event.
func TestWatchReloadsForAChangeMadeBeforeItBegan(t *testing.T) {
	readAt := time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(f, readAt.Add(time.Minute), readAt.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, func() []string { return []string{f} }, readAt, time.Millisecond,
			slog.New(slog.NewTextHandler(io.Discard, nil)), func() {
				select {
				case changes <- struct{}{}:
				default:
				}
			})
	}()
	// A bound, not a measure: Watch sets up an OS file watcher and its own
	// debounce timer; a change it misses fails here instead of hanging.
	select {
	case <-changes:
	case err := <-done:
		t.Fatalf("Watch returned %v before reloading", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a change made before the watch began was missed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
