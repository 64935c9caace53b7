package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxWaitFactor caps how long a stream of events can postpone a reload:
// Watch reloads at the latest this many Debounce periods after the first
// event of a burst.
const maxWaitFactor = 20

// Watch reloads the policy when files under the directory change, until ctx
// is done; it then returns nil. Run one Watch per Engine.
//
// It watches the directory and every folder below it, dot folders included
// (a ConfigMap update writes a new ..<timestamp> folder and renames the
// ..data symlink over the old one), adds folders created later, and reloads
// once a burst of events has been quiet for Debounce. Every PollInterval it
// also rereads the directory, for what notifications miss: a directory
// deleted and recreated, folders reached through symlinks, lost events. If
// notifications cannot start or fail, Watch logs it and carries on with the
// rereading alone. Nothing here touches Eval: a reload ends in one pointer
// swap.
func (e *Engine) Watch(ctx context.Context) error {
	if e.bundle != nil {
		// A bundle is polled, not watched: OPA's downloader runs the
		// polling (bundlesource.go).
		e.bundle.run(ctx)
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		e.log.Error("policy file notifications unavailable, rereading periodically",
			"error", err, "interval", e.pollInterval)
		return e.poll(ctx)
	}
	defer w.Close()
	if err := e.addTree(w, e.dir); err != nil {
		e.log.Error("cannot watch policy directory, rereading periodically",
			"error", err, "interval", e.pollInterval)
		return e.poll(ctx)
	}
	e.setWatching(true)
	defer e.setWatching(false)

	// Changes made between New and now would otherwise wait for an event.
	_ = e.reload(true)

	resync := time.NewTicker(e.pollInterval)
	defer resync.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	var pendingSince time.Time // zero: no reload pending

	schedule := func() {
		now := time.Now()
		if pendingSince.IsZero() {
			pendingSince = now
		}
		deadline := pendingSince.Add(maxWaitFactor * e.debounce)
		debounce.Reset(max(min(e.debounce, deadline.Sub(now)), 0))
	}

	for {
		select {
		case <-ctx.Done():
			return nil

		case ev, ok := <-w.Events:
			if !ok {
				return e.notificationsLost(ctx)
			}
			// Attribute changes alone (touch, chmod) change no content.
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if info, err := os.Lstat(ev.Name); err == nil && info.IsDir() {
					if err := e.addTree(w, ev.Name); err != nil && !errors.Is(err, fs.ErrNotExist) {
						e.log.Warn("cannot watch new policy folder", "folder", ev.Name, "error", err)
					}
				}
			}
			schedule()

		case err, ok := <-w.Errors:
			if !ok {
				return e.notificationsLost(ctx)
			}
			// After an overflow, events were lost: reread everything.
			e.log.Warn("policy file notification error, rereading the directory", "error", err)
			schedule()

		case <-debounce.C:
			pendingSince = time.Time{}
			_ = e.reload(false) // refusals are logged, reported and kept in Status
			e.rewatch(w)

		case <-resync.C:
			e.rewatch(w)
			_ = e.reload(true)
		}
	}
}

// rewatch watches folders that appeared unnoticed, the directory itself
// included when it was deleted and created again.
func (e *Engine) rewatch(w *fsnotify.Watcher) {
	if err := e.addTree(w, e.dir); err != nil {
		// The reload that goes with it reports a missing directory.
		e.log.Debug("cannot watch policy directory", "error", err)
	}
}

func (e *Engine) notificationsLost(ctx context.Context) error {
	e.setWatching(false)
	e.log.Error("policy file notifications stopped, rereading periodically", "interval", e.pollInterval)
	return e.poll(ctx)
}

// addTree watches root and every real folder below it, dot folders included.
// Symlinked folders are not descended: the ConfigMap ..data link points at a
// sibling folder that is watched anyway, and a watch is per inode.
func (e *Engine) addTree(w *fsnotify.Watcher, root string) error {
	watched := make(map[string]bool)
	for _, p := range w.WatchList() {
		watched[p] = true
	}
	// WalkDir does not descend a symlinked root (a directory mounted through
	// a link); walk what it points to.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if !d.IsDir() || watched[p] {
			return nil
		}
		if err := w.Add(p); err != nil && (p == root || !errors.Is(err, fs.ErrNotExist)) {
			return err
		}
		return nil
	})
}

// poll rereads the directory every PollInterval until ctx is done, for when
// file notifications are unavailable. Unchanged content is neither logged
// nor reported.
func (e *Engine) poll(ctx context.Context) error {
	t := time.NewTicker(e.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = e.reload(true)
		}
	}
}
