package config

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Files lists the files this config reads besides itself: secret files and
// JWKS files. A change to any of them is a config change.
func (c *Config) Files() []string {
	var out []string
	if c.Path != "" {
		out = append(out, c.Path)
	}
	for _, ti := range c.Tokens.Issuers {
		for _, f := range []string{ti.SecretFile, ti.JWKSFile} {
			if f != "" {
				out = append(out, f)
			}
		}
	}
	for _, in := range c.Issuer.Integrations {
		if in.SecretFile != "" {
			out = append(out, in.SecretFile)
		}
	}
	for _, m := range []MintedKind{c.Minting.SAT, c.Minting.Access, c.Minting.XBS} {
		out = append(out, m.KeyFiles...)
	}
	return out
}

// Watch calls onChange, debounced, whenever one of files changes, until ctx
// is done. It watches the files' directories, not the files, so editors'
// rename-and-replace saves and Kubernetes' symlink swaps are seen. files
// returns the current list, so a reload that names new files is followed.
// A file modified at or after since (when the serving config was read) but
// before the watch began is a change too: it would otherwise be missed.
func Watch(ctx context.Context, files func() []string, since time.Time, debounce time.Duration, logger *slog.Logger, onChange func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	watched := map[string]bool{}
	sync := func() {
		for _, f := range files() {
			dir := filepath.Dir(f)
			if !watched[dir] {
				if err := w.Add(dir); err != nil {
					logger.Warn("cannot watch config directory", "dir", dir, "error", err)
					continue
				}
				watched[dir] = true
			}
		}
	}
	sync()
	var timer *time.Timer
	var fire <-chan time.Time
	if changedSince(files(), since) {
		timer = time.NewTimer(debounce)
		fire = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !relevant(ev.Name, files()) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(debounce)
			} else {
				timer.Reset(debounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			logger.Warn("config watch error", "error", err)
		case <-fire:
			fire = nil
			onChange()
			sync()
		}
	}
}

// relevant says whether an event in a watched directory concerns one of
// the files: the file itself, or (Kubernetes ConfigMaps) the ..data link
// the file resolves through.
func relevant(name string, files []string) bool {
	for _, f := range files {
		if name == f || filepath.Dir(name) == filepath.Dir(f) && filepath.Base(name) == "..data" {
			return true
		}
	}
	return false
}

// changedSince says whether any of files was modified at or after t.
func changedSince(files []string, t time.Time) bool {
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && !fi.ModTime().Before(t) {
			return true
		}
	}
	return false
}
