package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestgate/guestgate/internal/testsupport"
)

// startWatch runs e.Watch until the test ends and waits until it receives
// file notifications.
func startWatch(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
		if e.Status().Watching {
			t.Error("Status.Watching still true after Watch returned")
		}
	})
	testsupport.Eventually(t, "the watcher to start", func() bool { return e.Status().Watching })
}

func waitForReason(t *testing.T, e *Engine, want string) {
	t.Helper()
	testsupport.Eventually(t, "decision reason "+want, func() bool { return reason(t, e) == want })
}

func TestWatchReloadsAPolicyRewrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	e := newTestEngine(t, dir, nil)
	startWatch(t, e)

	// Truncate and write, as many editors save: a reload may catch the file
	// half written and refuse it, and the next event's reload loads it.
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(taggedPolicy("v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitForReason(t, e, "v2")
}

func TestWatchFollowsAnEditorsRenameOverSave(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	e := newTestEngine(t, dir, nil)
	startWatch(t, e)

	// Write a temporary dot file, then rename it over the original.
	tmp := filepath.Join(dir, ".authz.rego.tmp")
	if err := os.WriteFile(tmp, []byte(taggedPolicy("v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "authz.rego")); err != nil {
		t.Fatal(err)
	}
	waitForReason(t, e, "v2")
}

func TestWatchFollowsARemoveAndRecreateSave(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	e := newTestEngine(t, dir, nil)
	startWatch(t, e)

	if err := os.Remove(filepath.Join(dir, "authz.rego")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v2")})
	waitForReason(t, e, "v2")

	// The recreated file is itself watched: a later save is seen too.
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v3")})
	waitForReason(t, e, "v3")
}

func TestWatchLoadsANewSubfolder(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": `package guestgate.authz

default decision := {"allowed": false, "reason": "closed"}

decision := {"allowed": true, "reason": "opened"} if data.guestgate.extra.open
`})
	e := newTestEngine(t, dir, nil)
	startWatch(t, e)

	writeFiles(t, dir, map[string]string{"extra/deeper/open.rego": "package guestgate.extra\n\nopen := true\n"})
	waitForReason(t, e, "opened")

	// Changes inside the new folders are watched.
	writeFiles(t, dir, map[string]string{"extra/deeper/open.rego": "package guestgate.extra\n\nopen := false\n"})
	waitForReason(t, e, "closed")
	writeFiles(t, dir, map[string]string{"extra/deeper/flags/open.json": `{"open": true}`})
	testsupport.Eventually(t, "data from the newest folder", func() bool {
		v, ok := e.Data("extra", "deeper", "flags", "open")
		return ok && v == true
	})
}

// TestWatchFollowsAConfigMapSymlinkSwap lays the directory out as the
// kubelet mounts a ConfigMap: the files live in a timestamped dot folder,
// ..data links to it, and each key is a top-level link through ..data. An
// update writes a new folder and renames a fresh link over ..data. Keys
// cannot hold folders, so data files sit at the top and carry their path.
func TestWatchFollowsAConfigMapSymlinkSwap(t *testing.T) {
	const registryJSON = `{"registry": ` + widgetsJSON + `}`
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"..v1/authz.rego":    widgetPolicy,
		"..v1/registry.json": registryJSON,
	})
	symlink(t, "..v1", filepath.Join(dir, "..data"))
	symlink(t, filepath.Join("..data", "authz.rego"), filepath.Join(dir, "authz.rego"))
	symlink(t, filepath.Join("..data", "registry.json"), filepath.Join(dir, "registry.json"))

	e := newTestEngine(t, dir, nil)
	if got := decisionField(t, e, `{"wid": "W-DEMO"}`, "allowed"); got != "true" {
		t.Fatalf("through ConfigMap links allowed = %s, want true", got)
	}
	if st := e.Status(); st.Files != 2 {
		t.Errorf("Status.Files = %d, want 2 (the ..v1 folder itself is not loaded)", st.Files)
	}
	startWatch(t, e)

	writeFiles(t, dir, map[string]string{
		"..v2/authz.rego":    widgetPolicy,
		"..v2/registry.json": `{"registry": {"widgets": {"W-DEMO": {"anonymous_sessions": false}}}}`,
	})
	symlink(t, "..v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the widget disabled by the swap", func() bool {
		return decisionField(t, e, `{"wid": "W-DEMO"}`, "allowed") == "false"
	})
	if st := e.Status(); st.LastError != "" {
		t.Errorf("Status.LastError = %q after the swap", st.LastError)
	}

	// A second swap, adding a key, works the same way.
	writeFiles(t, dir, map[string]string{
		"..v3/authz.rego":    taggedPolicy("v3"),
		"..v3/registry.json": registryJSON,
		"..v3/limits.json":   `{"limits": {"max": 3}}`,
	})
	symlink(t, "..v3", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	symlink(t, filepath.Join("..data", "limits.json"), filepath.Join(dir, "limits.json"))
	waitForReason(t, e, "v3")
	testsupport.Eventually(t, "the added key's data", func() bool {
		_, ok := e.Data("limits", "max")
		return ok
	})
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestWatchRefusesABrokenPolicyAndKeepsServing(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	rec := &reloadRecorder{}
	e := newTestEngine(t, dir, rec)
	good := e.Revision()
	startWatch(t, e)

	writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\ndecision := {\"allowed\": true\n"})
	// OnReload is called after the status changes: wait for both.
	testsupport.Eventually(t, "the refusal in Status and OnReload", func() bool {
		return e.Status().LastError != "" && rec.last().Err != nil
	})
	if st := e.Status(); !strings.Contains(st.LastError, "authz.rego:4: rego_parse_error") {
		t.Errorf("Status.LastError = %q, want the file and line", st.LastError)
	}
	if got := reason(t, e); got != "v1" {
		t.Errorf("reason = %q while the directory is broken, want v1", got)
	}
	if e.Revision() != good {
		t.Error("revision changed on a refused reload")
	}
	if ev := rec.last(); ev.Err == nil || ev.Revision != good {
		t.Errorf("OnReload got %+v, want the refusal", ev)
	}

	// Emptying the directory is refused too.
	removeAll(t, dir)
	testsupport.Eventually(t, "the empty directory refused", func() bool {
		return strings.Contains(e.Status().LastError, ErrNoPolicy.Error())
	})
	if got := reason(t, e); got != "v1" {
		t.Errorf("reason = %q while the directory is empty, want v1", got)
	}

	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v2")})
	waitForReason(t, e, "v2")
	if st := e.Status(); st.LastError != "" {
		t.Errorf("Status.LastError = %q after the repair", st.LastError)
	}
}

func TestWatchIgnoresChangesThatLeaveTheContentAlone(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	rec := &reloadRecorder{}
	e := newTestEngine(t, dir, rec)
	first := e.Revision()
	startWatch(t, e)
	before := rec.count()

	// An unrelated file triggers an attempt that finds nothing new, then a
	// real change follows: the revision moves exactly once.
	writeFiles(t, dir, map[string]string{"README.md": "notes", "authz.rego": taggedPolicy("v1")})
	testsupport.Eventually(t, "a reload attempt", func() bool { return rec.count() > before })
	if e.Revision() != first {
		t.Errorf("revision changed without a content change")
	}
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v2")})
	waitForReason(t, e, "v2")
}

func TestPollingReloadsWhenNotificationsAreUnavailable(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	rec := &reloadRecorder{}
	e, err := New(Options{Dir: dir, PollInterval: 20 * time.Millisecond, Logger: quietLogger(), OnReload: rec.record})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.poll(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("poll returned %v", err)
		}
	}()

	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v2")})
	waitForReason(t, e, "v2")

	// Polling an unchanged directory reports nothing; a broken one is
	// reported once, not on every tick.
	writeFiles(t, dir, map[string]string{"authz.rego": "package guestgate.authz\n\ndecision := {\n"})
	// Wait on the recorder, not the status: OnReload is called after the
	// status changes, so the status alone may run ahead of the count.
	testsupport.Eventually(t, "the refusal reported", func() bool { return rec.last().Err != nil })
	reported := rec.count()
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v3")})
	waitForReason(t, e, "v3")
	testsupport.Eventually(t, "the load of v3 reported", func() bool { return rec.last().Err == nil })
	if got := rec.count(); got != reported+1 {
		t.Errorf("OnReload called %d times after the refusal, want once (for v3)", got-reported)
	}
}

func TestWatchSurvivesTheDirectoryBeingReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v1")})
	e, err := New(Options{Dir: dir, PollInterval: 50 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, e)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the missing directory refused", func() bool {
		return strings.Contains(e.Status().LastError, "no such file or directory")
	})
	if got := reason(t, e); got != "v1" {
		t.Errorf("reason = %q without a directory, want v1", got)
	}
	writeFiles(t, dir, map[string]string{"authz.rego": taggedPolicy("v2")})
	waitForReason(t, e, "v2")

	// Later changes to the new directory are seen too.
	writeFiles(t, dir, map[string]string{"sub/more.json": `{"x": 1}`})
	testsupport.Eventually(t, "data in the new directory", func() bool {
		_, ok := e.Data("sub", "x")
		return ok
	})
}

// Issue 13: after the directory was deleted and restored with the same
// content, Status kept the "no such file" error until the next change.
func TestWatchClearsTheErrorWhenTheDirectoryComesBackUnchanged(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	files := map[string]string{"authz.rego": taggedPolicy("v1"), "registry/data.json": `{"x": 1}`}
	writeFiles(t, dir, files)
	e, err := New(Options{Dir: dir, PollInterval: 20 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, e)
	aside := filepath.Join(t.TempDir(), "aside")
	for i := range 4 {
		// Deleted and written again, or moved away and back.
		var err error
		if i%2 == 0 {
			err = os.RemoveAll(dir)
		} else {
			err = os.Rename(dir, aside)
		}
		if err != nil {
			t.Fatal(err)
		}
		testsupport.Eventually(t, "the missing directory refused", func() bool {
			return strings.Contains(e.Status().LastError, "no such file or directory")
		})
		if i%2 == 0 {
			writeFiles(t, dir, files)
		} else if err := os.Rename(aside, dir); err != nil {
			t.Fatal(err)
		}
		testsupport.EventuallyState(t, "the error cleared", func() (bool, string) {
			st := e.Status()
			return st.LastError == "", st.LastError
		})
	}
}
